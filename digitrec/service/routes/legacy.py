"""The seeds' URLs, answering byte for byte what their clients already parse.

``/digitRecognition/localService/v1.0`` and ``/v1.1`` answered ``The digit is recognized as : 7.\\n``;
``POST /uploads`` answered the printed output of the seed's prediction script. Both seeds served these
plain strings with Flask's default ``text/html; charset=utf-8``, which is kept: the body is only our own
text and a digit, never client input.
"""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from digitrec.service.context import Route, ServiceContext
from digitrec.service.inputs import images_from_request
from digitrec.service.responses import ApiError
from digitrec.service.routes.api import image_response
from digitrec.service.uploads import parse_stored_name

SEED_CONTENT_TYPE = "text/html; charset=utf-8"
UPLOAD_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upload new File</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><main class="narrow"><h1>Upload new File</h1>
<form action="/uploads" method="post" enctype="multipart/form-data">
<p><input type="file" name="file" accept="image/png,image/jpeg,image/webp,image/bmp">
<input type="submit" value="Upload"></p></form>
<p><a href="/">The drawing page</a></p></main></body></html>
"""


def _predict_one(ctx: ServiceContext, request: Request) -> int:
    ctx.require_predict(request)
    images = images_from_request(request)[:1]
    (outcome,) = ctx.predictor.predict(images, model_name="digits", source="legacy")
    return outcome.record.label


def local_service(ctx: ServiceContext, request: Request) -> Response:
    label = _predict_one(ctx, request)
    return Response(f"The digit is recognized as : {label}.\n", content_type=SEED_CONTENT_TYPE)


def upload_form(ctx: ServiceContext, request: Request) -> Response:
    return Response(UPLOAD_FORM, content_type=SEED_CONTENT_TYPE)


def upload_predict(ctx: ServiceContext, request: Request) -> Response:
    label = _predict_one(ctx, request)
    return Response(f"Model restored.\nrecognised result:\n{label}\n", content_type=SEED_CONTENT_TYPE)


def stored_upload(ctx: ServiceContext, request: Request, name: str) -> Response:
    ctx.require(request, "viewer")
    request_id = parse_stored_name(name)
    if request_id is None:
        raise ApiError(404, "not_found", "uploads are named <record id>.png")
    record = ctx.store.get(request_id)
    if record is None:
        raise ApiError(404, "not_found", "no upload with this name")
    return image_response(ctx, request, record)


def upload_records(ctx: ServiceContext, request: Request) -> Response:
    """The latest records as text, one per line: time, predicted label, client file name, image URL."""
    ctx.require(request, "viewer")
    page = ctx.store.latest(limit=100)
    lines = []
    for r in page.records:
        when = r.request_time.strftime("%Y-%m-%d, %H:%M:%S")
        name = (r.file_name or "-").replace("\t", " ")
        lines.append(f"{when}\t{r.model_name}\t{r.label}\t{name}\t/uploads/{r.request_id}.png\n")
    return Response("".join(lines), content_type="text/plain; charset=utf-8")


ROUTES = [
    Route("/digitRecognition/localService/v1.0", "legacy.v1_0", local_service, ("POST",)),
    Route("/digitRecognition/localService/v1.1", "legacy.v1_1", local_service, ("POST",)),
    Route("/uploads", "legacy.upload_form", upload_form, ("GET",)),
    Route("/uploads", "legacy.upload", upload_predict, ("POST",)),
    Route("/uploads/record", "legacy.records", upload_records),
    Route("/uploads/<name>", "legacy.stored", stored_upload),
]
