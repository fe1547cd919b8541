"""The JSON API under /api/v1: predict, records, corrections, models, the OpenAPI document."""

from __future__ import annotations

import hmac
import json
import time
import uuid

from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from digitrec.model import versions
from digitrec.model.classes import FASHION_CLASSES
from digitrec.records.record import PredictionRecord
from digitrec.service.access import RANK, SESSION_COOKIE
from digitrec.service.context import Route, ServiceContext, set_session_cookie
from digitrec.service.corrections_view import corrections_json
from digitrec.service.dashboard import dashboard_json
from digitrec.service.filters import filter_from_args, window_from_args
from digitrec.service.inputs import images_from_request
from digitrec.service.models import ModelUnavailableError
from digitrec.service.openapi import openapi_document
from digitrec.service.predictor import Outcome, Rejected, correction_key_hash
from digitrec.service.reading import ReadOutcome, read_each
from digitrec.service.responses import ApiError, image_error_status, json_response

API_SOURCES = ("api", "canvas", "upload")
MAX_PAGE = 100


def predict(ctx: ServiceContext, request: Request) -> Response:
    """One image: its prediction, or its error as the request's error. Several images: an answer per
    image; 200 when all were used, 207 when some were (each unusable one in ``errors``, naming its file),
    and the images' shared 4xx when none was (see docs/api.md)."""
    started = time.perf_counter()
    model, source, version = model_source_version(ctx, request)
    images = images_from_request(request)
    if len(images) == 1:
        results: list[Outcome | Rejected] = list(
            ctx.predictor.predict(images, model_name=model, source=source, version=version, look_for_numbers=True)
        )
    else:
        results = ctx.predictor.predict_each(
            images, model_name=model, source=source, version=version, look_for_numbers=True
        )
    outcomes = [r for r in results if isinstance(r, Outcome)]
    body: dict = {
        "model": model,
        "model_version": outcomes[0].record.model_version if outcomes else None,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 3),
        "predictions": [o.to_json() for o in outcomes],
    }
    if len(images) == 1:
        return json_response(body)
    return per_image_response(body, results, len(images))


def read(ctx: ServiceContext, request: Request) -> Response:
    """The number written in each image: its digits left to right with their boxes, and the marks
    refused as not digits. One image answers the reading itself; several answer ``readings`` and
    ``errors`` with the same statuses as predict."""
    started = time.perf_counter()
    model, source, version = model_source_version(ctx, request)
    images = images_from_request(request)
    results = read_each(
        ctx.predictor, images, model_name=model, source=source, version=version, partial=len(images) > 1
    )
    outcomes = [r for r in results if isinstance(r, ReadOutcome)]
    elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
    if len(images) == 1:
        return json_response({**outcomes[0].to_json(), "elapsed_ms": elapsed_ms})
    body: dict = {
        "model": model,
        "model_version": outcomes[0].record.model_version if outcomes else None,
        "elapsed_ms": elapsed_ms,
        "readings": [o.to_json() for o in outcomes],
    }
    return per_image_response(body, results, len(images))


def model_source_version(ctx: ServiceContext, request: Request) -> tuple[str, str, str | None]:
    """``?model=``, ``?source=`` and ``?version=`` of a predict or read request, checked (and the
    predict token, when one is set)."""
    ctx.require_predict(request)
    args = request.args  # MultiDict.get of a missing key raises and catches an exception: look first
    model = args["model"] if "model" in args else "digits"
    source = args["source"] if "source" in args else "api"
    if source not in API_SOURCES:
        raise ApiError(400, "invalid_source", f"source must be one of {', '.join(API_SOURCES)}")
    version = requested_version(request)
    if version is not None and version != ctx.models.serving_version(model):
        # Another version is loaded on demand, seconds of CPU: on a protected service, only token holders ask.
        ctx.require(request, "viewer")
    return model, source, version


def per_image_response(body: dict, results: list, count: int) -> Response:
    """Several images: 200 when all were used, 207 when some were, the images' shared 4xx when none."""
    rejected = [r for r in results if isinstance(r, Rejected)]
    used = len(results) - len(rejected)
    body["errors"] = [rejection_json(r) for r in rejected]
    if not rejected:
        return json_response(body)
    if used:
        return json_response(body, status=207)
    statuses = {e["status"] for e in body["errors"]}
    status = statuses.pop() if len(statuses) == 1 else 400
    summary = "; ".join(e["message"] for e in body["errors"])
    return json_response(
        {"error": "no_usable_image", "message": f"none of the {count} images could be used: {summary}", **body},
        status=status,
    )


def rejection_json(rejected: Rejected) -> dict:
    status, code = image_error_status(rejected.error) or (400, "invalid_image")
    return {
        "index": rejected.index,
        "file_name": rejected.file_name,
        "status": status,
        "error": code,
        "message": rejected.describe(),
    }


def requested_version(request: Request) -> str | None:
    """``?version=`` (or the form field ``version`` of an upload): a version id, or None for the serving one."""
    args = request.args
    value = args["version"] if "version" in args else None
    if value is None and request.mimetype == "multipart/form-data":
        form = request.form
        value = form["version"] if "version" in form else None
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if not versions.VERSION_ID.match(value):
        raise ApiError(400, "invalid_version", "version must be a version id such as 2026-11-21 (see /api/v1/models)")
    return value


def record_json(record) -> dict:
    data = record.to_json()
    del data["correction_key_sha256"]  # of no use to a reader, and nobody's business
    data["image_url"] = f"/api/v1/records/{record.request_id}/image" if record.has_image else None
    data["preview_url"] = f"/api/v1/records/{record.request_id}/preview" if record.has_image else None
    return data


def list_records(ctx: ServiceContext, request: Request) -> Response:
    ctx.require(request, "viewer")
    raw_limit = request.args.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ApiError(400, "invalid_limit", "limit must be a whole number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {MAX_PAGE}")
    where = filter_from_args(request.args)
    cursor = request.args.get("cursor") or None
    page = ctx.store.latest(limit, cursor) if where.is_empty else ctx.store.find(where, limit, cursor)
    return json_response(
        {
            "records": [record_json(r) for r in page.records],
            "next_cursor": page.next_cursor,
            "filters": where.to_params(),
        }
    )


def dashboard(ctx: ServiceContext, request: Request) -> Response:
    """Aggregates for one model (and optionally one version) over the last ``days`` UTC days."""
    ctx.require(request, "viewer")
    window = window_from_args(request.args, list(ctx.models.names))
    stats = ctx.store.summarize(window)
    names, serving = model_facts(ctx, window.model)
    body = dashboard_json(
        stats, window, class_names=names, engine=ctx.store.engine, serving_version=serving, record_json=record_json
    )
    body["corrections"] = corrections_json(ctx.store, window, record_json)
    body["role"] = ctx.access.role_of(request)  # the page offers "reject" to reviewers and admins only
    return json_response(body, headers={"Cache-Control": "no-store"})


def model_facts(ctx: ServiceContext, model: str) -> tuple[list[str], str | None]:
    """Class names and the version serving now; records of a model no longer served still get names."""
    try:
        loaded = ctx.models.get(model, wait=0)
        return loaded.class_names, loaded.version or None
    except ModelUnavailableError:
        names = list(FASHION_CLASSES) if model == "fashion" else [str(i) for i in range(10)]
        return names, None


def get_record(ctx: ServiceContext, request: Request, record_id: str) -> Response:
    ctx.require(request, "viewer")
    return json_response(record_json(ctx.record_or_404(record_id)))


def record_image(ctx: ServiceContext, request: Request, record_id: str) -> Response:
    ctx.require(request, "viewer")
    return image_response(ctx, request, ctx.record_or_404(record_id))


def image_response(ctx: ServiceContext, request: Request, record: PredictionRecord) -> Response:
    """The record's image: the file on this replica's volume when it has one (records from before
    images were stored, or the replica that wrote it), else the copy kept in the records store."""
    path = ctx.uploads.open_path(record.image_path)
    if path is not None:
        handle = open(path, "rb")  # closed by the WSGI server via wrap_file
        response = Response(wrap_file(request.environ, handle), mimetype="image/png", direct_passthrough=True)
        response.content_length = path.stat().st_size
    else:
        data = ctx.store.get_image(record.request_id) if record.has_image else None
        if data is None:
            raise ApiError(404, "not_found", "this record has no stored image")
        response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


def record_preview(ctx: ServiceContext, request: Request, record_id: str) -> Response:
    """The 28x28 image the model saw for this record (white on black), re-made from the stored input; for
    a reading, its whole input as ink with a box around each mark (``record_thumbnail``).

    Thumbnails show this rather than the stored file: a transparent PNG shows as whatever lies behind
    it (black strokes vanish on a dark card, white ones on a light table), this never does."""
    ctx.require(request, "viewer")
    record = ctx.record_or_404(record_id)
    path = ctx.uploads.open_path(record.image_path)
    data = path.read_bytes() if path is not None else None
    if data is None and record.has_image:
        data = ctx.store.get_image(record.request_id)
    if data is None:
        raise ApiError(404, "not_found", "this record has no stored image")
    if record.is_reading:
        from digitrec.service.record_thumbnail import reading_thumbnail
        from digitrec.service.uploads import encode_png

        png = encode_png(reading_thumbnail(data, record, ctx.config.max_pixels))
    else:
        png = preview_png(data, model_style(ctx, record.model_name), ctx.config.max_pixels)
    response = Response(png)
    response.mimetype = "image/png"
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


def model_style(ctx: ServiceContext, model_name: str) -> str:
    """How this model's inputs are prepared: from the loaded model, else from its name."""
    fallback = "garment" if model_name == "fashion" else "digit"
    if model_name in ctx.models.names and ctx.models.state(model_name) == "loaded":
        return getattr(ctx.models.get(model_name, wait=0).recognizer, "style", fallback)
    return fallback


def preview_png(data: bytes, style: str, max_pixels: int) -> bytes:
    from digitrec.imaging.preprocess import prepare
    from digitrec.service.uploads import encode_png

    return encode_png(prepare(data, max_pixels, style).preview)


def correct_record(ctx: ServiceContext, request: Request, record_id: str) -> Response:
    """A correction: by the client that got the answer (its correction key), or by a reviewer/admin.

    Anything else is refused with 403 (an unknown id too, so ids cannot be probed) and the record is
    left as it was. Each correction stores who made it: the role, and a salted hash of the client's
    address, for ``digitrec finetune``'s selection."""
    role = ctx.access.role_of(request)
    trusted = RANK[role] >= RANK["reviewer"]
    record = ctx.record_or_404(record_id) if trusted else ctx.record_if_visible(record_id)
    if trusted:
        by = "local" if ctx.access.open else role
    elif record is not None and _key_matches(record, _correction_key(request)):
        by = "submitter"
    else:
        raise ApiError(
            403,
            "forbidden",
            "correcting this record needs its correction key (from the prediction's answer) or a reviewer token",
        )
    correction = _text_from(request) if record.is_reading else _label_from(request)
    client = ctx.access.client_hash(request)
    if by == "submitter" and not ctx.correction_limit.allow(client):  # token holders are not limited
        raise ApiError(
            429,
            "too_many_corrections",
            f"at most {ctx.correction_limit.per_minute} corrections per minute from one client; wait and retry",
            {"Retry-After": str(ctx.correction_limit.retry_after())},
        )
    try:
        found = ctx.store.set_correction(record.request_id, correction, by, client)
    except ValueError as exc:  # what the store refuses is named, never a 500
        raise ApiError(400, "invalid_text" if record.is_reading else "invalid_label", str(exc)) from None
    if not found:
        raise ApiError(404, "not_found", "no record with this id")
    updated = ctx.record_or_404(record_id)
    if RANK[role] >= RANK["viewer"]:
        return json_response(record_json(updated))
    return json_response(  # the submitter sees what it sent, not the record's other fields
        {
            "request_id": str(updated.request_id),
            "label": updated.label,
            "corrected_label": updated.corrected_label,
            "corrected_text": updated.corrected_text,
        }
    )


def _correction_key(request: Request) -> str | None:
    """The record's correction key: the ``X-Correction-Key`` header, or ``correction_key`` in the JSON
    body or the form."""
    key = request.headers.get("X-Correction-Key")
    if key:
        return key
    if request.mimetype == "application/json":
        document = _json_body(request)
        given = document.get("correction_key") if isinstance(document, dict) else None
    else:
        given = request.form.get("correction_key")
    return given if isinstance(given, str) and given else None


def _key_matches(record: PredictionRecord, key: str | None) -> bool:
    expected = record.correction_key_sha256
    return key is not None and expected is not None and hmac.compare_digest(correction_key_hash(key), expected)


def delete_record(ctx: ServiceContext, request: Request, record_id: str) -> Response:
    """Delete a record for good: the record, its image, its upload file and every spooled copy (admin)."""
    from digitrec.records.config import RecordsConfig
    from digitrec.records.deletion import delete_record as delete_everywhere

    ctx.require(request, "admin")
    try:
        request_id = uuid.UUID(record_id)
    except ValueError:
        raise ApiError(404, "not_found", "no record with this id") from None
    records = RecordsConfig.from_env(ctx.config.environ, data_dir=ctx.config.data_dir)
    own = getattr(getattr(ctx.store, "spool", None), "path", None)
    report = delete_everywhere(ctx.store, request_id, ctx.config.data_dir, records.spool_path.parent, own)
    if not report.found:
        raise ApiError(404, "not_found", "no record with this id")
    return json_response({"deleted": str(request_id), **report.to_json()})


def reject_correction(ctx: ServiceContext, request: Request, record_id: str) -> Response:
    """A reviewer's verdict on a correction: ``{"rejected": true}`` (finetune skips it) or false (undo)."""
    ctx.require(request, "reviewer")
    record = ctx.record_or_404(record_id)
    rejected = True
    if request.mimetype == "application/json":
        document = _json_body(request)
        value = document.get("rejected", True) if isinstance(document, dict) else None
        if not isinstance(value, bool):
            raise ApiError(400, "invalid_rejected", 'send {"rejected": true} or {"rejected": false}')
        rejected = value
    if record.correction is None:
        raise ApiError(409, "not_corrected", "this record has no correction to reject")
    if not ctx.store.reject_correction(record.request_id, rejected):
        raise ApiError(404, "not_found", "no record with this id")
    return json_response(record_json(ctx.record_or_404(record_id)))


def _text_from(request: Request) -> str | None:
    """A reading's correction: the digits it shows, as text ({"text": "2026"}; null removes it)."""
    hint = 'this record is a reading: send {"text": "<the digits it shows>"} (or null to remove the correction)'
    if request.mimetype == "application/json":
        document = _json_body(request)
        if not isinstance(document, dict) or "text" not in document:
            raise ApiError(400, "invalid_text", hint)
        value = document["text"]
    else:
        value = request.form.get("text", request.args.get("text"))
        if value is None:
            raise ApiError(400, "invalid_text", "this record is a reading: send the field 'text' with its digits")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # {"text": 2026}: a JSON number of digits is what it says (leading zeros need a string)
    if not isinstance(value, str):
        raise ApiError(400, "invalid_text", hint)
    text = value.strip()
    if not text or not all("0" <= c <= "9" for c in text):
        raise ApiError(
            400, "invalid_text", f"text must be the digits 0-9 the image shows (such as '2026'), not {text[:40]!r}"
        )
    return text


def _json_body(request: Request) -> object:
    """The JSON body (read once and kept: the correction key and the correction come from one body)."""
    try:
        return json.loads(request.get_data())
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None


def _label_from(request: Request) -> int | None:
    if request.mimetype == "application/json":
        document = _json_body(request)
        if not isinstance(document, dict) or "label" not in document:
            raise ApiError(400, "invalid_label", 'send {"label": <0-9>} (or null to remove the correction)')
        value = document["label"]
    else:
        value = request.form.get("label", request.args.get("label"))
        if value is None:
            raise ApiError(400, "invalid_label", "send the field 'label' with a class number 0-9")
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        # what a form sends when no class was chosen: refuse, rather than silently remove a correction
        raise ApiError(400, "invalid_label", "no class chosen: send a class number 0-9 (JSON null removes it)")
    if isinstance(value, bool):
        raise ApiError(400, "invalid_label", "label must be a whole number from 0 to 9")
    try:
        label = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_label", "label must be a whole number from 0 to 9") from None
    if not 0 <= label <= 9 or (isinstance(value, float) and value != label):
        raise ApiError(400, "invalid_label", "label must be a whole number from 0 to 9")
    return label


def list_models(ctx: ServiceContext, request: Request) -> Response:
    return json_response({"models": [model_json(ctx, name) for name in ctx.models.names], "default": "digits"})


def model_json(ctx: ServiceContext, name: str) -> dict:
    """One model: its state, the version serving in this process, and every version on disk."""
    registry = ctx.models
    state = registry.state(name)
    entry: dict = {"name": name, "state": state}
    if state == "loaded":
        loaded = registry.get(name, wait=0)
        entry.update(
            {
                "version": loaded.version,
                "class_names": loaded.class_names,
                "load_seconds": round(loaded.load_seconds, 3),
            }
        )
        metadata = getattr(loaded.recognizer, "metadata", {}) or {}
        for key in ("dataset", "test_accuracy", "date", "architecture", "parameter_count"):
            if key in metadata:
                entry[key] = metadata[key]
    try:
        on_disk = versions.list_versions(name, registry.models_dir)
    except versions.ModelNotFoundError:
        on_disk = []
    loaded_now = registry.loaded_versions(name)
    entry["promoted_version"] = next((v.id for v in on_disk if v.promoted), None)
    entry["versions"] = [
        {
            **{k: v for k, v in info.to_json().items() if k != "path"},
            "serving": info.id == entry.get("version"),
            "loaded": info.id in loaded_now,
        }
        for info in on_disk
    ]
    entry["served"] = registry.history(name)
    error = registry.reload_error(name)
    if error:
        entry["reload_error"] = error
    return entry


def reload_model(ctx: ServiceContext, request: Request, name: str) -> Response:
    """Serve the version promoted on disk now, without waiting for the next poll."""
    ctx.require(request, "admin")
    try:
        result = ctx.models.reload(name)
    except versions.ModelNotFoundError as exc:
        raise ApiError(404, "model_not_found", str(exc)) from None
    except ModelUnavailableError:
        raise
    except Exception as exc:  # e.g. a broken checkpoint: the old version keeps serving
        raise ApiError(
            500, "reload_failed", f"could not load the promoted version ({exc}); the previous version still serves"
        ) from None
    return json_response({**result, "model_info": model_json(ctx, name)})


def promote_model(ctx: ServiceContext, request: Request, name: str) -> Response:
    """Promote ``{"version": <id>}`` on disk, then serve it (as ``digitrec models promote`` and a reload)."""
    ctx.require(request, "admin")
    document = _json_body(request)
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not versions.VERSION_ID.match(version):
        raise ApiError(400, "invalid_version", 'send {"version": "<version id>"} (see /api/v1/models)')
    _known_model(ctx, name)
    try:
        versions.promote(name, version, ctx.models.models_dir, reason="promoted through the API")
    except versions.PromotionError as exc:
        raise ApiError(409, "promotion_failed", str(exc)) from None
    return reload_model(ctx, request, name)


def rollback_model(ctx: ServiceContext, request: Request, name: str) -> Response:
    """Serve the version that served before the current one (as ``digitrec models rollback``)."""
    ctx.require(request, "admin")
    _known_model(ctx, name)
    try:
        versions.rollback(name, ctx.models.models_dir)
    except versions.PromotionError as exc:
        raise ApiError(409, "rollback_failed", str(exc)) from None
    return reload_model(ctx, request, name)


def _known_model(ctx: ServiceContext, name: str) -> None:
    if name not in ctx.models.names:
        raise ApiError(404, "model_not_found", f"this service serves no model {name!r}")


def start_session(ctx: ServiceContext, request: Request) -> Response:
    """Exchange a token (``{"token": ...}`` or the form field ``token``) for a session cookie, so the
    pages never keep the token in a URL or in script-readable storage."""
    if request.mimetype == "application/json":
        document = _json_body(request)
        token = document.get("token") if isinstance(document, dict) else None
    else:
        token = request.form.get("token")
    role = ctx.access.role_for_token(token) if isinstance(token, str) and token.strip() else None
    if role is None:
        raise ApiError(401, "unauthorized", "this token is not valid", {"WWW-Authenticate": 'Bearer realm="digitrec"'})
    response = json_response({"role": role})
    set_session_cookie(ctx, request, response, role, token)
    return response


def end_session(ctx: ServiceContext, request: Request) -> Response:
    response = json_response({"role": "anonymous"})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return response


def whoami(ctx: ServiceContext, request: Request) -> Response:
    """The role this request has, so a page knows which controls to show."""
    return json_response({"role": ctx.access.role_of(request), "protected": ctx.protected})


def openapi(ctx: ServiceContext, request: Request) -> Response:
    return json_response(openapi_document(ctx.config, list(ctx.models.names)))


ROUTES = [
    Route("/api/v1/predict", "api.predict", predict, ("POST",)),
    Route("/api/v1/read", "api.read", read, ("POST",)),
    Route("/api/v1/records", "api.records", list_records),
    Route("/api/v1/records/<record_id>", "api.record", get_record),
    Route("/api/v1/records/<record_id>", "api.record_delete", delete_record, ("DELETE",)),
    Route("/api/v1/records/<record_id>/image", "api.record_image", record_image),
    Route("/api/v1/records/<record_id>/preview", "api.record_preview", record_preview),
    Route("/api/v1/records/<record_id>/correction", "api.correction", correct_record, ("POST",)),
    Route("/api/v1/records/<record_id>/correction/reject", "api.correction_reject", reject_correction, ("POST",)),
    Route("/api/v1/dashboard", "api.dashboard", dashboard),
    Route("/api/v1/models", "api.models", list_models),
    Route("/api/v1/models/<name>/reload", "api.model_reload", reload_model, ("POST",)),
    Route("/api/v1/models/<name>/promote", "api.model_promote", promote_model, ("POST",)),
    Route("/api/v1/models/<name>/rollback", "api.model_rollback", rollback_model, ("POST",)),
    Route("/api/v1/session", "api.session", start_session, ("POST",)),
    Route("/api/v1/session", "api.session_end", end_session, ("DELETE",)),
    Route("/api/v1/session", "api.whoami", whoami, ("GET",)),
    Route("/api/v1/openapi.json", "api.openapi", openapi),
]
