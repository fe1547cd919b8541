"""Read the images out of a prediction request: multipart files, a raw image body, or JSON data URLs."""

from __future__ import annotations

import base64
import binascii
import json
import re

from werkzeug.wrappers import Request

from digitrec.service.predictor import ImageInput
from digitrec.service.responses import ApiError

MAX_IMAGES_PER_REQUEST = 32
RAW_TYPES = ("image/", "application/octet-stream")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*?;base64,(?P<data>.*)$", re.DOTALL)


def images_from_request(request: Request, field: str = "file") -> list[ImageInput]:
    """The request's images, or an ``ApiError`` that says what is wrong with the request."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        images = [ImageInput(f.read(), f.filename) for f in request.files.getlist(field)]
        if not images:
            raise ApiError(400, "no_file", f"the form has no file field named {field!r}")
    elif mimetype == "application/json":
        images = _images_from_json(request.get_data(cache=False))
    elif mimetype.startswith(RAW_TYPES):
        images = [ImageInput(request.get_data(cache=False), None)]
    elif not mimetype and not request.content_length:
        raise ApiError(400, "no_file", "send an image: multipart field 'file', a raw image body, or JSON")
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {mimetype!r} is not accepted; use multipart/form-data, image/*, "
            "application/octet-stream or application/json",
        )
    if len(images) > MAX_IMAGES_PER_REQUEST:
        raise ApiError(413, "too_many_images", f"at most {MAX_IMAGES_PER_REQUEST} images per request")
    if len(images) == 1 and not images[0].data:  # with several, each empty one gets its own error
        raise ApiError(400, "empty_file", "an uploaded file is empty (0 bytes)")
    return images


def _images_from_json(body: bytes) -> list[ImageInput]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_json", 'expected a JSON object like {"image": "data:image/png;base64,..."}')
    if "images" in document:
        items = document["images"]
        if not isinstance(items, list) or not items:
            raise ApiError(400, "invalid_json", "'images' must be a non-empty list of data URLs")
    elif "image" in document:
        items = [document["image"]]
    else:
        raise ApiError(400, "no_file", "the JSON object has no 'image' field")
    name = document.get("file_name") if isinstance(document.get("file_name"), str) else None
    return [ImageInput(decode_data_url(item), name) for item in items]


def decode_data_url(value: object) -> bytes:
    """Bytes of ``data:<type>;base64,<data>`` (or of bare base64)."""
    if not isinstance(value, str):
        raise ApiError(400, "invalid_image", "an image must be a string: a base64 data URL")
    match = _DATA_URL.match(value.strip())
    payload = match.group("data") if match else value.strip()
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_image", "the image is not valid base64") from None
