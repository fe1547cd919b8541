"""Exceptions that name what went wrong, so callers (CLI, HTTP service) can map them to clear messages.

Each input problem has its own class so the service can choose the HTTP status without parsing text:
``InvalidImageError`` -> 400, ``UnsupportedImageTypeError`` -> 415, ``ImageTooLargeError`` -> 413,
``NoDigitFoundError`` -> 400.
"""

from __future__ import annotations


class DigitrecError(Exception):
    """Base class of every error digitrec raises on purpose."""


class InvalidImageError(DigitrecError, ValueError):
    """The input is empty, truncated, or not an image at all."""


class ImageFileError(DigitrecError, OSError):
    """An image file named by path cannot be read (a folder, no permission, an I/O error)."""

    def __str__(self) -> str:  # "<path>: <what is wrong>", without OSError's "[Errno 2]" prefix
        return f"{self.filename}: {self.strerror}" if self.filename else str(self.strerror or "")


class ImageFileNotFoundError(ImageFileError, FileNotFoundError):
    """No file at the image path; still a ``FileNotFoundError`` for code written before this class."""


class UnsupportedImageTypeError(InvalidImageError):
    """The input is an image format we recognise but do not accept (for example GIF or SVG)."""


class ImageTooLargeError(DigitrecError, ValueError):
    """The image header declares more pixels than allowed (decompression-bomb guard)."""


class NoDigitFoundError(DigitrecError, ValueError):
    """The image decoded fine but holds no ink: blank paper, empty canvas, flat colour."""


class ModelNotFoundError(DigitrecError, FileNotFoundError):
    """No checkpoint exists under the model name or path that was asked for."""


class CheckpointError(DigitrecError):
    """A checkpoint exists but cannot be loaded into the network (wrong shapes, missing variables)."""


class DatasetError(DigitrecError):
    """A dataset is missing, corrupt, or fails its SHA-256 check."""


class ConfigurationError(DigitrecError, ValueError):
    """A setting (argument or environment variable) is missing or has a bad value."""
