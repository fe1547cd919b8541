"""One reading request, end to end: bytes -> image -> ``Reading`` (a row of digits) -> stored PNG -> one record.

A reading is one record whatever the number of digits: the text, each digit with its box and
confidence, and the input image. The answer is built only after ``store.add_many`` returned (the
record is durable), as for predictions. Each image of a request is read on its own: an unusable one
gets its own ``Rejected``, the others are still read and stored.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import math
import time
import uuid
from typing import Any

import cv2
import numpy as np

from digitrec.errors import InvalidImageError, NoDigitFoundError
from digitrec.imaging.preprocess import load_image
from digitrec.records.record import PredictionRecord, new_request_id, utc_now_ms
from digitrec.service.models import LoadedModel
from digitrec.service.number_hint import can_read
from digitrec.service.predictor import (
    INPUT_ERRORS,
    ImageInput,
    Predictor,
    Rejected,
    clean_file_name,
    new_correction_key,
    stored_png,
)
from digitrec.service.responses import ApiError
from digitrec.service.uploads import encode_png

READ_PIXELS = 4_000_000  # larger images are read from a shrunk copy (see read_at_most)


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def box_json(box: Any) -> dict[str, int]:
    x, y, w, h = (int(v) for v in box)
    return {"x": x, "y": y, "width": w, "height": h}


def mark_json(prediction: Any, preview: bytes) -> dict[str, Any]:
    """One digit (or refused mark) of a reading: where it is, what it is, and what the model saw."""
    return {
        "box": box_json(prediction.box),
        "label": int(prediction.label),
        "name": str(prediction.name),
        "confidence": float(prediction.confidence),
        "probabilities": [float(p) for p in prediction.probabilities],
        "in_domain": bool(getattr(prediction, "in_domain", True)),
        "domain_score": _optional_float(getattr(prediction, "domain_score", None)),
        "preview_png": png_data_url(preview),
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclasses.dataclass(frozen=True)
class ReadOutcome:
    """A stored reading: its record, the reading itself, and a preview PNG per digit and refused mark."""

    record: PredictionRecord
    reading: Any  # digitrec's Reading
    digit_previews: list[bytes]
    refused_previews: list[bytes]
    elapsed_ms: float
    index: int = 0
    correction_key: str | None = None  # handed to this client only; the record keeps its SHA-256

    def to_json(self) -> dict[str, Any]:
        r, reading = self.record, self.reading
        return {
            "request_id": str(r.request_id),
            "index": self.index,
            "model": r.model_name,
            "model_version": r.model_version,
            "text": str(reading.text),
            "confidence": float(reading.confidence),
            "digits": [mark_json(d, png) for d, png in zip(reading.digits, self.digit_previews)],
            "refused": [mark_json(m, png) for m, png in zip(reading.refused, self.refused_previews)],
            "file_name": r.file_name,
            "request_time": r.request_time.isoformat(timespec="milliseconds"),
            "elapsed_ms": round(self.elapsed_ms, 3),
            "image_url": f"/api/v1/records/{r.request_id}/image",
            "correction_key": self.correction_key,
        }


def reading_record(
    reading: Any,
    model: LoadedModel,
    request_id: uuid.UUID,
    when: dt.datetime,
    *,
    source: str,
    file_name: str | None,
    image: tuple[str | None, str],
    ms: float,
    correction_key_sha256: str,
) -> PredictionRecord:
    """The one record a reading becomes: its text, its marks with their boxes, and its image. The
    record keeps only the SHA-256 of the correction key its answer hands out."""
    image_path, sha256 = image
    record = PredictionRecord.from_reading(
        reading,
        model_name=model.name,
        model_version=model.version,
        source=source,
        request_id=request_id,
        request_time=when,
        file_name=file_name,
        image_path=image_path,
        image_sha256=sha256,
        processing_ms=ms,
    )
    return dataclasses.replace(record, correction_key_sha256=correction_key_sha256)


def _pngs(previews: np.ndarray) -> list[bytes]:
    return [encode_png(np.ascontiguousarray(preview)) for preview in previews]


def read_each(
    predictor: Predictor,
    images: list[ImageInput],
    *,
    model_name: str,
    source: str,
    version: str | None = None,
    partial: bool = True,
) -> list[ReadOutcome | Rejected]:
    """One result per image, in order: a stored reading, or the image's ``Rejected``.

    With ``partial=False`` the first unusable image's error is raised and nothing is stored."""
    with predictor.models.acquire(model_name, version) as model:
        if not can_read(model.recognizer):
            raise ApiError(
                400,
                "cannot_read",
                f"the {model_name} model recognises one item per image; reading a row of digits needs a digit "
                "model (use /api/v1/predict for this one)",
            )
        read: dict[int, tuple[np.ndarray, Any, float]] = {}
        rejected: dict[int, Rejected] = {}
        for index, image in enumerate(images):
            started = time.perf_counter()
            try:
                read[index] = (*read_image(model, image, predictor.max_pixels), started)
            except INPUT_ERRORS as exc:
                if not partial:
                    raise
                rejected[index] = Rejected(index, clean_file_name(image.file_name), exc)
        outcomes: dict[int, ReadOutcome] = {}
        pngs: dict[uuid.UUID, bytes] = {}
        for index, (decoded, reading, started) in read.items():
            image = images[index]
            png = stored_png(image.data, decoded)
            request_id, when = new_request_id(), utc_now_ms()
            stored = predictor.keep_image(request_id, when, png)
            key, key_hash = new_correction_key()
            ms = (time.perf_counter() - started) * 1000.0
            file_name = clean_file_name(image.file_name)
            record = reading_record(
                reading,
                model,
                request_id,
                when,
                source=source,
                file_name=file_name,
                image=stored,
                ms=ms,
                correction_key_sha256=key_hash,
            )
            pngs[request_id] = png
            outcomes[index] = ReadOutcome(
                record,
                reading,
                _pngs(reading.previews),
                _pngs(reading.refused_previews),
                ms,
                index,
                correction_key=key,
            )
        if outcomes:
            predictor.store.add_many([o.record for o in outcomes.values()], pngs)  # durable before any answer
            for outcome in outcomes.values():
                count = len(outcome.reading.digits)
                digits = str(count) if count < 9 else "9+"  # a bounded label set
                predictor.metrics.readings.labels(model=outcome.record.model_name, digits=digits).inc()
        return [outcomes[i] if i in outcomes else rejected[i] for i in range(len(images))]


def read_image(model: LoadedModel, image: ImageInput, max_pixels: int) -> tuple[np.ndarray, Any]:
    """The decoded image and its reading; an image with no mark at all is ``NoDigitFoundError``."""
    if not image.data:
        raise InvalidImageError("the file is empty (0 bytes)")
    decoded = load_image(image.data, max_pixels)
    reading = read_at_most(model.recognizer, decoded, READ_PIXELS)
    if not reading.digits and not reading.refused:
        raise NoDigitFoundError("no digit found: nothing in the image stands out from the paper")
    return decoded, reading


def read_at_most(recognizer: Any, image: np.ndarray, pixels: int) -> Any:
    """``recognizer.read(image)``, on a copy shrunk to at most ``pixels`` when the image is larger.

    Reading costs grow with the ink: a 9-megapixel page of noise takes about 10 s of CPU, a predict of
    it well under one. Digits in a photo of that size are hundreds of pixels tall, so reading a
    4-megapixel copy loses nothing; the boxes are scaled back to the image as sent."""
    height, width = image.shape[:2]
    if height * width <= pixels:
        return recognizer.read(image)
    factor = math.sqrt(pixels / (height * width))
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    reading = recognizer.read(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    scale_x, scale_y = width / size[0], height / size[1]

    def back(prediction: Any) -> Any:
        x, y, w, h = prediction.box
        box = (int(x * scale_x), int(y * scale_y), max(1, round(w * scale_x)), max(1, round(h * scale_y)))
        return dataclasses.replace(prediction, box=box)

    return dataclasses.replace(
        reading, digits=[back(d) for d in reading.digits], refused=[back(m) for m in reading.refused]
    )
