"""One prediction request, end to end: bytes → image → tensor → prediction → stored PNG → record.

Every image of a request is decoded and checked first. ``predict_each`` answers per image: a file that
is not a usable image gets its own ``Rejected`` (naming the file) and the others are still predicted and
stored; ``predict`` (one image, the seed URLs) raises the image's error instead. The answer is built only
after ``store.add_many`` returned, which the store promises happens once the records are durable
(primary store or spool): a success never refers to a lost record.

The stored PNG is kept once, in the records store with its record (any replica can serve it); with
``DIGITREC_KEEP_UPLOAD_FILES=1`` also as a file under ``uploads/`` on the data volume.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import time
import unicodedata
import uuid
from typing import Any

import numpy as np

from digitrec.errors import ImageTooLargeError, InvalidImageError, NoDigitFoundError
from digitrec.records.record import PredictionRecord, new_request_id, utc_now_ms
from digitrec.records.store import RecordStore
from digitrec.service.metrics import ServiceMetrics
from digitrec.service.models import LoadedModel, ModelRegistry
from digitrec.service.number_hint import can_read, several_digits
from digitrec.service.uploads import UploadStore, encode_png

MAX_FILE_NAME = 255
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREDICT_TIMEOUT = 30.0  # seconds a request waits for its model call before answering 503
READ_HINT = "this image seems to hold several digits: POST it to /api/v1/read to read them all"


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """One image as the client sent it; ``file_name`` is only ever data."""

    data: bytes
    file_name: str | None = None


# Problems with one image's content; anything else (model, store, timeout) fails the whole request.
INPUT_ERRORS = (InvalidImageError, ImageTooLargeError, NoDigitFoundError)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An image of the request that could not be used, and why (nothing was stored for it)."""

    index: int
    file_name: str | None
    error: Exception

    def describe(self) -> str:
        """The error message prefixed with the file's name, or its position when it has none."""
        where = self.file_name or f"image {self.index + 1}"
        return f"{where}: {self.error}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A stored prediction: the record plus the 28x28 image the model saw (for the page)."""

    record: PredictionRecord
    preview_png: bytes
    elapsed_ms: float
    index: int = 0
    in_domain: bool | None = None  # None: the model cannot tell
    domain_score: float | None = None
    several_digits: bool | None = None  # None: not looked at (the seeds' URLs)
    correction_key: str | None = None  # handed to this client only; the record keeps its SHA-256

    def to_json(self) -> dict[str, Any]:
        r = self.record
        extra: dict[str, Any] = {}
        if self.in_domain is not None:
            extra.update(in_domain=self.in_domain, domain_score=self.domain_score)
        if self.several_digits is not None:
            extra["several_digits"] = self.several_digits
            if self.several_digits:
                extra["hint"] = READ_HINT
        request_id = str(r.request_id)
        return {
            "request_id": request_id,
            "id": request_id,  # the same value under its first name, kept for existing clients
            "index": self.index,
            "label": r.label,
            "name": r.class_name,
            "confidence": r.confidence,
            "probabilities": list(r.probabilities),
            "model": r.model_name,
            "model_version": r.model_version,
            "file_name": r.file_name,
            "request_time": r.request_time.isoformat(timespec="milliseconds"),
            "elapsed_ms": round(self.elapsed_ms, 3),
            "preview_png": "data:image/png;base64," + base64.b64encode(self.preview_png).decode("ascii"),
            "image_url": f"/api/v1/records/{request_id}/image",
            "correction_key": self.correction_key,
            **extra,
        }


def new_correction_key() -> tuple[str, str]:
    """(key, its SHA-256): the key goes to the client in the answer, the record keeps only the hash.
    The key is random (128 bits), so a plain SHA-256 makes the stored value useless to a reader."""
    key = secrets.token_urlsafe(16)
    return key, correction_key_hash(key)


def correction_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def stored_png(data: bytes, decoded: np.ndarray) -> bytes:
    """The bytes to keep on the volume: a PNG the decoder just read in full is kept as sent (no
    re-encoding cost, and its SHA-256 is the client's file's); anything else is re-encoded as PNG."""
    return data if data[:8] == PNG_SIGNATURE else encode_png(decoded)


def clean_file_name(name: str | None) -> str | None:
    """The client's name as a printable string of at most 255 characters (control characters dropped)."""
    if not name:
        return None
    if name.isascii() and name.isprintable():  # the usual name: nothing to drop, no lookup per character
        return name[:MAX_FILE_NAME]
    printable = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return printable[:MAX_FILE_NAME] or None


class Predictor:
    """Runs the pipeline for a request's images against one model."""

    def __init__(
        self,
        models: ModelRegistry,
        store: RecordStore,
        uploads: UploadStore,
        metrics: ServiceMetrics,
        *,
        max_pixels: int,
        keep_upload_files: bool = True,
    ) -> None:
        self.models = models
        self.store = store
        self.uploads = uploads
        self.metrics = metrics
        self.max_pixels = max_pixels
        self.keep_upload_files = keep_upload_files

    def keep_image(self, request_id: uuid.UUID, when: Any, png: bytes) -> tuple[str | None, str]:
        """(path of the upload file or None, SHA-256): the file is written unless uploads are kept
        only in the records store (``DIGITREC_KEEP_UPLOAD_FILES=0``)."""
        if self.keep_upload_files:
            return self.uploads.save(request_id, when, png)
        return None, hashlib.sha256(png).hexdigest()

    def predict(
        self,
        images: list[ImageInput],
        *,
        model_name: str,
        source: str,
        version: str | None = None,
        look_for_numbers: bool = False,
    ) -> list[Outcome]:
        """All images predicted and stored, or the first unusable image's error raised (nothing stored).

        ``version``: a version id to answer with instead of the serving one. ``look_for_numbers``: say
        whether each image seems to hold several digits (``Outcome.several_digits``)."""
        results = self.predict_each(
            images,
            model_name=model_name,
            source=source,
            partial=False,
            version=version,
            look_for_numbers=look_for_numbers,
        )
        for result in results:
            if isinstance(result, Rejected):
                raise result.error
        return results  # type: ignore[return-value]

    def predict_each(
        self,
        images: list[ImageInput],
        *,
        model_name: str,
        source: str,
        partial: bool = True,
        version: str | None = None,
        look_for_numbers: bool = False,
    ) -> list[Outcome | Rejected]:
        """One result per image, in order: the usable ones predicted and stored, the others ``Rejected``.

        With ``partial=False`` nothing is predicted or stored as soon as one image is unusable.
        """
        with self.models.acquire(model_name, version) as model:  # kept loaded even if a swap happens now
            return self._predict_each(images, model, source, partial, look_for_numbers)

    def _predict_each(
        self, images: list[ImageInput], model: LoadedModel, source: str, partial: bool, look_for_numbers: bool
    ) -> list[Outcome | Rejected]:
        started = time.perf_counter()
        prepared: dict[int, Any] = {}
        rejected: dict[int, Rejected] = {}
        with model.batcher.incoming():  # a forming batch waits for us while we decode
            for index, image in enumerate(images):
                try:
                    if not image.data:
                        raise InvalidImageError("the file is empty (0 bytes)")
                    prepared[index] = model.recognizer.prepare(image.data, self.max_pixels)
                except INPUT_ERRORS as exc:
                    rejected[index] = Rejected(index, clean_file_name(image.file_name), exc)
                    if not partial:
                        return [rejected[index]]
            if prepared:
                tensors = [p.tensor.reshape(1, 784) for p in prepared.values()]
                batch = tensors[0] if len(tensors) == 1 else np.concatenate(tensors, axis=0)
                pending = model.batcher.submit(batch)
        if not prepared:
            return [rejected[i] for i in range(len(images))]
        proba = pending.result(timeout=PREDICT_TIMEOUT)
        records: list[PredictionRecord] = []
        pngs: dict[uuid.UUID, bytes] = {}
        outcomes: dict[int, Outcome] = {}
        for (index, prep), row in zip(prepared.items(), proba):
            image = images[index]
            prediction = model.recognizer.prediction_from_scores(row)
            request_id, when = new_request_id(), utc_now_ms()
            png = stored_png(image.data, prep.image)
            image_path, sha256 = self.keep_image(request_id, when, png)
            pngs[request_id] = png
            key, key_hash = new_correction_key()
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            record = PredictionRecord(
                request_id=request_id,
                request_time=when,
                model_name=model.name,
                model_version=model.version,
                label=int(prediction.label),
                class_name=str(prediction.name),
                confidence=float(prediction.confidence),
                probabilities=tuple(map(float, prediction.probabilities)),
                source=source,
                file_name=clean_file_name(image.file_name),
                image_path=image_path,
                image_sha256=sha256,
                processing_ms=elapsed_ms,
                in_domain=_optional(getattr(prediction, "in_domain", None), bool),
                domain_score=_optional(getattr(prediction, "domain_score", None), float),
                correction_key_sha256=key_hash,
            )
            records.append(record)
            several = None  # only a model that reads numbers can tell
            if look_for_numbers and can_read(model.recognizer):
                several = several_digits(model.recognizer, prep.preview, prep.image)
            outcomes[index] = Outcome(
                record,
                encode_png(prep.preview),
                elapsed_ms,
                index,
                in_domain=getattr(prediction, "in_domain", None),
                domain_score=getattr(prediction, "domain_score", None),
                several_digits=several,
                correction_key=key,
            )
        self.store.add_many(records, pngs)  # the images are durable with their records
        for record in records:
            self.metrics.predicted(record.model_name, record.label)
        return [outcomes[i] if i in outcomes else rejected[i] for i in range(len(images))]


def _optional(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (a model's numpy scalar as a plain bool or float), None left as None."""
    return None if value is None else kind(value)
