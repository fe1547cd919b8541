"""Errors specific to record stores (kept here until digitrec/errors.py adopts them)."""

from __future__ import annotations

from digitrec.errors import DigitrecError


class StoreUnavailableError(DigitrecError):
    """The primary store cannot be reached or did not answer in time (the spool takes over)."""


class StoreClosedError(DigitrecError, RuntimeError):
    """A store was used after ``close()``."""


class InvalidCursorError(DigitrecError, ValueError):
    """A ``latest()`` cursor was not one this package produced."""
