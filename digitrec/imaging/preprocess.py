"""Real-world image -> the network's input: float32 (1, 784) in [0, 1], white ink on black.

Pipeline (one direction only): bytes -> checked header -> decoded array -> ink map -> crop -> scale
-> 28x28 placement. Digits are placed the way MNIST was made (longest side 20 px, centre of mass at
the centre of a 28x28 field); garments the way Fashion-MNIST was made (longest side 28 px, bounding
box centred). The ink map subtracts the paper colour measured on the image border, one-sided by
polarity, so black-on-white scans, white-on-black canvases and coloured ink all come out the same.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from digitrec.errors import (
    ImageFileError,
    ImageFileNotFoundError,
    ImageTooLargeError,
    InvalidImageError,
    NoDigitFoundError,
    UnsupportedImageTypeError,
)

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray

DEFAULT_MAX_PIXELS = 40_000_000  # ~ a 7300x5500 photo; larger headers are refused before decoding
ACCEPTED_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM"}  # Pillow's names; PPM covers PGM/PBM
STYLES = ("digit", "garment")
MIN_CONTRAST = 40  # ink must differ from the paper by this much (of 255) to count
SPECK_SHARE = 0.02  # a blob with less than this share of the largest blob's pixels is a speck
MIN_STROKE_PX = 2.2  # thinnest stroke allowed in the 20 px box; MNIST strokes are about 2-3 px


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """What the model sees (``tensor``), a picture of it (``preview``), and the decoded ``image``."""

    tensor: np.ndarray  # float32 (1, 784)
    preview: np.ndarray  # uint8 (28, 28), white on black
    image: np.ndarray  # decoded input: grey (H, W), BGR or BGRA, uint8


# --- bytes -> decoded array -------------------------------------------------------------------------


def _looks_like_svg(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower())


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image header declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")


def _png_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    _check_size(width, height, max_pixels)
    if b"IEND" not in data[-12:]:
        raise InvalidImageError("truncated PNG: the file ends before its IEND chunk")
    return width, height


def inspect_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Format, width and height from the header alone; refuses bombs and formats we do not take."""
    if not data:
        raise InvalidImageError("empty input: no image data")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[8:16] == b"\x00\x00\x00\x0dIHDR" and len(data) >= 33:
        # PNG (what browsers send) is read here without Pillow: its size sits at a fixed offset, and a
        # header-only bomb must be refused as too large, not as garbled.
        return "PNG", *_png_size(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format or "", im.size
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"image header declares too many pixels; the limit is {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # Messages in the user's terms (they reach HTTP clients): never a library's exception name.
        if _looks_like_svg(data):
            raise UnsupportedImageTypeError("SVG is not supported; send PNG, JPEG, BMP, TIFF or WebP") from None
        if isinstance(exc, UnidentifiedImageError):
            raise InvalidImageError("not an image: the data is not a PNG, JPEG, BMP, TIFF or WebP file") from None
        raise InvalidImageError("the image file is damaged or incomplete and cannot be read") from None
    if fmt not in ACCEPTED_FORMATS:
        raise UnsupportedImageTypeError(f"{fmt or 'this'} images are not supported; send PNG, JPEG, BMP, TIFF or WebP")
    _check_size(width, height, max_pixels)
    if fmt == "JPEG" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise InvalidImageError("truncated JPEG: the file ends before its end-of-image marker")
    return fmt, width, height


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode bytes with OpenCV after the header check; uint8 grey, BGR or BGRA."""
    fmt, _, _ = inspect_header(data, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    # JPEG has no alpha, and IMREAD_COLOR applies the EXIF orientation of phone photos.
    flags = cv2.IMREAD_COLOR if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        raise InvalidImageError(f"the {fmt} file is damaged or uses a variant that cannot be read") from None
    if image is None or image.size == 0:
        raise InvalidImageError(f"the {fmt} file is damaged or incomplete and cannot be read")
    return _as_uint8(image)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(finite * scale, 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, 255).astype(np.uint8)
    raise InvalidImageError(f"unsupported array dtype {image.dtype}")


def read_image_file(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is a ``DigitrecError`` (that is still an ``OSError``
    of the usual kind, so ``except FileNotFoundError`` keeps working)."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageFileNotFoundError(exc.errno, "no such image file", str(path)) from None
    except IsADirectoryError as exc:
        raise ImageFileError(exc.errno, "this is a folder, not an image file", str(path)) from None
    except OSError as exc:
        raise ImageFileError(
            exc.errno, f"cannot read the image file ({exc.strerror or 'read error'})", str(path)
        ) from None


def load_image(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Path, bytes or array -> uint8 array (grey, BGR or BGRA), with the same size limits for all."""
    if isinstance(source, np.ndarray):
        image = source
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise InvalidImageError(f"array of shape {source.shape} is not grey (H, W), BGR or BGRA (H, W, 3|4)")
        if image.size == 0:
            raise InvalidImageError("empty array")
        pixels = image.shape[0] * image.shape[1]
        if pixels > max_pixels:
            raise ImageTooLargeError(f"array has {pixels:,} pixels; the limit is {max_pixels:,}")
        return np.ascontiguousarray(_as_uint8(image))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return decode_image(read_image_file(Path(source)), max_pixels)
    raise InvalidImageError(f"cannot read an image from {type(source).__name__}; pass a path, bytes or an array")


# --- decoded array -> ink map -----------------------------------------------------------------------


def _split(image: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Single-channel colour planes (one for grey) and the alpha plane (None if absent or opaque)."""
    if image.ndim == 2:
        return [image], None
    planes = list(cv2.split(image))
    if len(planes) == 4:
        alpha = planes.pop()
        return planes, (None if cv2.minMaxLoc(alpha)[0] == 255 else alpha)
    return planes, None


def _darkness(plane: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """255 - intensity, transparent pixels counting as white paper: ``(255 - plane) * alpha / 255``.

    Compositing on white and inverting in one saturating uint8 op keeps big browser canvases cheap.
    """
    inverted = cv2.bitwise_not(plane)
    return inverted if alpha is None else cv2.multiply(inverted, alpha, scale=1.0 / 255.0)


def _frame(image: np.ndarray, width: int, samples: int = 1024) -> np.ndarray:
    """About ``samples`` pixels from a band ``width`` deep round the edge, as (K,) or (K, C)."""
    h, w = image.shape[:2]
    step = max(1, 2 * (h + w) * width // samples)
    rest = image.shape[2:]
    bands = [image[:width, ::step], image[-width:, ::step], image[::step, :width], image[::step, -width:]]
    return np.concatenate([band.reshape(-1, *rest) for band in bands])


def paper_colour(image: np.ndarray) -> np.ndarray:
    """Darkness (255 - intensity) of the paper per colour channel, one value for grey.

    The median of a thin frame round the image: the paper or canvas the ink lies on. Transparent
    pixels count as white paper.
    """
    width = max(1, min(max(2, min(image.shape[:2]) // 50), image.shape[0] // 4 or 1, image.shape[1] // 4 or 1))
    frame = _frame(image, width).astype(np.float32)
    if frame.ndim == 1:
        dark = (255.0 - frame)[:, None]
    else:
        dark = 255.0 - frame[:, :3]
        if frame.shape[1] == 4:
            dark *= frame[:, 3:] * (1.0 / 255.0)
    middle = len(dark) // 2
    return np.partition(dark, middle, axis=0)[middle]  # the median, without np.median's overhead


def _scalar(value: float) -> tuple[float, float, float, float]:
    return (float(value), 0.0, 0.0, 0.0)


def ink_map(image: np.ndarray) -> np.ndarray:
    """uint8 map, bright where ink is: how far each pixel departs from the paper towards ink.

    Polarity comes from the paper: on light paper ink is what is darker than the paper (in any
    channel, so yellow or red ink counts), on dark paper what is lighter. On grey paper (white, black,
    a transparent canvas) the darkest (or lightest) channel says it all, so only one plane is worked
    on; coloured paper is measured channel by channel.
    """
    paper = np.round(paper_colour(image))
    light = float(np.mean(paper)) <= 127.0
    planes, alpha = _split(image)
    if len(planes) > 1 and np.all(paper == paper[0]):
        extreme = cv2.min if light else cv2.max  # the channel furthest towards ink
        planes, paper = [extreme(extreme(planes[0], planes[1]), planes[2])], paper[:1]
    ink = None
    for plane, level in zip(planes, paper):
        dark = _darkness(plane, alpha)
        if light:  # ink is darker than the paper
            diff = cv2.subtract(dark, _scalar(level))
        else:  # ink is lighter, i.e. less dark
            diff = cv2.subtract(cv2.bitwise_not(dark), _scalar(255.0 - level))
        ink = diff if ink is None else cv2.max(ink, diff)
    return ink


def detect_polarity(image: np.ndarray) -> str:
    """ "dark-on-light" (paper, scans) or "light-on-dark" (chalkboards, MNIST-style canvases)."""
    return "dark-on-light" if float(np.mean(paper_colour(image))) <= 127.0 else "light-on-dark"


def ink_box(ink: np.ndarray, drop_specks: bool = True) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Binary mask of the ink (speckle noise removed unless ``drop_specks`` is False) and its bounding
    box (x, y, w, h). Raises NoDigitFoundError when nothing stands out from the paper.
    """
    peak = int(cv2.minMaxLoc(ink)[1])
    if peak < MIN_CONTRAST:
        raise NoDigitFoundError("no digit found: the image is blank (no ink differs from the paper)")
    otsu, mask = cv2.threshold(ink, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = max(float(otsu), MIN_CONTRAST / 2, peak * 0.25)
    if threshold > otsu:
        _, mask = cv2.threshold(ink, threshold, 1, cv2.THRESH_BINARY)
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        raise NoDigitFoundError("no digit found: no ink stroke stands out from the background")
    if drop_specks and _component_count(mask[y : y + h, x : x + w]) > 1:
        mask, (x, y, w, h) = _drop_specks(mask, (x, y, w, h))
    return mask, (x, y, w, h)


def _component_count(mask: np.ndarray) -> int:
    """Number of 8-connected blobs, from their outer borders (far cheaper than labelling pixels)."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return 0 if hierarchy is None else int(np.count_nonzero(hierarchy[0, :, 3] == -1))


def _drop_specks(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Remove isolated specks (tiny blobs next to the strokes) and box what is left."""
    x, y, w, h = box
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask[y : y + h, x : x + w], connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= max(2, SPECK_SHARE * areas.max())  # isolated specks are noise, not strokes
    if keep.all():
        return mask, box
    cleaned = np.zeros_like(mask)
    cleaned[y : y + h, x : x + w] = np.isin(labels, np.flatnonzero(keep) + 1)
    return cleaned, cv2.boundingRect(cleaned)


# --- ink map -> 28x28 -------------------------------------------------------------------------------


def _percentile_u8(values: np.ndarray, mask: np.ndarray, q: float) -> int:
    """The ``q``-th percentile (nearest rank) of uint8 ``values`` where ``mask`` is set, by histogram."""
    hist = cv2.calcHist([values], [0], mask, [256], [0, 256]).ravel()
    cumulative = np.cumsum(hist)
    return int(np.searchsorted(cumulative, cumulative[-1] * q / 100.0))


def _stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width in pixels: twice the distance from the stroke's spine to its edge."""
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    values = dist[mask > 0]
    if not values.size:
        return 0.0
    k = min(values.size - 1, int(0.9 * values.size))
    return 2.0 * float(np.partition(values, k)[k])


def _max_pool(image: np.ndarray, size: int) -> np.ndarray:
    """Shrink by ``size`` keeping each block's maximum, so hairlines survive at full strength."""
    block_max = cv2.dilate(image, np.ones((size, size), np.uint8), anchor=(0, 0))
    return np.ascontiguousarray(block_max[::size, ::size])


def _scale_to_box(patch: np.ndarray, mask: np.ndarray, box: int) -> np.ndarray:
    factor = max(patch.shape) / box  # source pixels per output pixel
    if factor > 4.0:
        # Huge crops: max-pool to about 4x the box first (cheap, and thin strokes stay visible).
        pool = int(factor // 4)
        patch, mask = _max_pool(patch, pool), _max_pool(mask, pool)
        factor = max(patch.shape) / box
    if factor > 1.0:
        # A thin pen would fade to nothing when averaged down: thicken it first so it keeps an
        # MNIST-like stroke width in the box.
        needed = MIN_STROKE_PX * factor
        width = _stroke_width(mask)
        if width < needed:
            k = int(math.ceil(needed - width)) | 1
            patch = cv2.dilate(patch, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    h, w = patch.shape
    longest = max(h, w)
    new_w = max(1, int(round(w * box / longest)))
    new_h = max(1, int(round(h * box / longest)))
    interpolation = cv2.INTER_AREA if factor > 1.0 else cv2.INTER_LINEAR
    return cv2.resize(patch, (new_w, new_h), interpolation=interpolation)


def _place(patch: np.ndarray, by_mass: bool) -> np.ndarray:
    """Paste into a 28x28 field, centred by centre of mass (digits) or bounding box (garments)."""
    h, w = patch.shape
    if by_mass:
        m = cv2.moments(patch.astype(np.float32))
        cy, cx = (m["m01"] / m["m00"], m["m10"] / m["m00"]) if m["m00"] else (h / 2, w / 2)
        top, left = int(round(14 - cy)), int(round(14 - cx))
        top, left = min(max(top, 0), 28 - h), min(max(left, 0), 28 - w)
    else:
        top, left = (28 - h) // 2, (28 - w) // 2
    field = np.zeros((28, 28), np.uint8)
    field[top : top + h, left : left + w] = patch
    return field


def find_ink(
    image: np.ndarray, drop_specks: bool = True
) -> tuple[np.ndarray, tuple[np.ndarray, tuple[int, int, int, int]]]:
    """The ink map and its box. Transparent pixels count as white paper, so light strokes on a
    transparent canvas (a dark-mode drawing app's export) vanish; only when that finds nothing, such an
    image is read again with its colour inverted, i.e. as light strokes on a dark canvas."""
    ink = ink_map(image)
    try:
        return ink, ink_box(ink, drop_specks)
    except NoDigitFoundError:
        if image.ndim != 3 or image.shape[2] != 4 or cv2.minMaxLoc(image[..., 3])[0] == 255:
            raise
    colours = cv2.bitwise_not(image[..., :3])
    ink = ink_map(np.dstack([colours, image[..., 3]]))
    return ink, ink_box(ink, drop_specks)


def to_mnist(image: np.ndarray, style: str = "digit") -> np.ndarray:
    """Decoded image -> 28x28 uint8, white foreground on black, placed like the training data."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    ink, (mask, (x, y, w, h)) = find_ink(image)
    return place_mark(ink[y : y + h, x : x + w], mask[y : y + h, x : x + w], style)


def place_mark(patch: np.ndarray, mask: np.ndarray, style: str = "digit") -> np.ndarray:
    """Ink patch cropped to one mark, and its 0/1 ink mask -> 28x28 uint8 placed like the training data.

    Used for a whole image by ``to_mnist`` and for each mark of a row of digits by
    ``digitrec.imaging.segment``, so a digit in a number reaches the model exactly as it would alone.
    """
    if style == "digit":
        # Clean paper to pure black and stretch the ink to full white, as MNIST's scans were.
        patch = cv2.bitwise_and(patch, patch, mask=mask)
        strong = _percentile_u8(patch, mask, 90)
        patch = cv2.convertScaleAbs(patch, alpha=255.0 / max(strong, 1.0))
        return _place(_scale_to_box(patch, mask, 20), by_mass=True)
    return _place(_scale_to_box(patch, mask, 28), by_mass=False)


# --- already in the model's own format --------------------------------------------------------------

CANONICAL_SIZE = (28, 28)
CANONICAL_BACKGROUND = 10  # the frame's median must be at most this dark-grey level (datasets: 0)
FRAME_PX = 2


def as_canonical(image: np.ndarray, style: str = "digit") -> np.ndarray | None:
    """``image`` itself (as 28x28 uint8) when it already is what the model was trained on, else None.

    A 28x28 single-channel image (or BGR with equal channels), light on a dark background (the median
    of a 2-pixel frame at most ``CANONICAL_BACKGROUND``), framed as the dataset frames its items:
    digits as MNIST (longest side 16-21 px, centre of mass within 1.5 px of the middle), garments as
    Fashion-MNIST (longest side at least 26 px, bounding box centred within 1 px). Re-cropping and
    re-scaling such an image only blurs it: the datasets' own test images lose 0.2 (MNIST) and 1 point
    (Fashion-MNIST) of accuracy through the general pipeline.
    """
    if image.shape[:2] != CANONICAL_SIZE:
        return None
    if image.ndim == 3:
        if image.shape[2] != 3 or not (
            np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
        ):
            return None
        image = np.ascontiguousarray(image[..., 0])
    frame = _frame(image, FRAME_PX)
    if float(np.median(frame)) > CANONICAL_BACKGROUND or int(image.max()) < 128:
        return None
    x, y, w, h = cv2.boundingRect((image > CANONICAL_BACKGROUND).astype(np.uint8))
    longest = max(w, h)
    if style == "digit":
        m = cv2.moments(image.astype(np.float32))
        if not m["m00"] or not 16 <= longest <= 21:
            return None
        cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
        framed = abs(cx - 14.0) <= 1.5 and abs(cy - 14.0) <= 1.5
    else:
        framed = longest >= 26 and abs(x + w / 2 - 14.0) <= 1.0 and abs(y + h / 2 - 14.0) <= 1.0
    return image if framed else None


def prepare(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, style: str = "digit") -> PreparedImage:
    """Path, bytes or array -> ``PreparedImage`` ready for ``DigitRecognizer.predict_proba``.

    An image already in the dataset's own 28x28 format is used as it is (see ``as_canonical``).
    """
    image = load_image(source, max_pixels)
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    canonical = as_canonical(image, style)
    preview = canonical if canonical is not None else to_mnist(image, style)
    tensor = (preview.astype(np.float32) * (1.0 / 255.0)).reshape(1, 784)
    return PreparedImage(tensor=tensor, preview=preview, image=image)


def preprocess(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, style: str = "digit") -> np.ndarray:
    """Just the (1, 784) float32 tensor."""
    return prepare(source, max_pixels, style).tensor


def load_input_image(path: ImageInput) -> tuple[np.ndarray, np.ndarray]:
    """Seed-compatible: ``processed, original = load_input_image(path)``; processed is (1, 784)."""
    prepared = prepare(path)
    return prepared.tensor, prepared.image
