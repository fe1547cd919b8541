"""The OpenAPI 3 description of every URL the service answers."""

from __future__ import annotations

from typing import Any

from digitrec.service.config import ServiceConfig

_ERROR = {"$ref": "#/components/responses/Error"}
_ID = {"name": "record_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_AUTH = [{"bearer": []}]


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _text(description: str, example: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/html": {"schema": {"type": "string"}, "example": example}},
    }


def _image_body(required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "oneOf": [
                                {"type": "string", "format": "binary"},
                                {"type": "array", "items": {"type": "string", "format": "binary"}},
                            ]
                        }
                    },
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "description": "data:image/png;base64,..."},
                        "images": {"type": "array", "items": {"type": "string"}},
                        "file_name": {"type": "string"},
                    },
                }
            },
        },
    }


_FILTER_PARAMETERS: list[dict[str, Any]] = [
    {"name": "model", "in": "query", "schema": {"type": "string"}, "description": "model name"},
    {"name": "version", "in": "query", "schema": {"type": "string"}, "description": "model version"},
    {"name": "label", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 9}},
    {
        "name": "corrected",
        "in": "query",
        "schema": {"type": "boolean"},
        "description": "1: only records a user corrected",
    },
    {
        "name": "confidence_below",
        "in": "query",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "description": "only predictions less confident than this (0.6 or 60%)",
    },
    {"name": "day", "in": "query", "schema": {"type": "string", "format": "date"}, "description": "UTC day"},
    {
        "name": "refused",
        "in": "query",
        "schema": {"type": "boolean"},
        "description": "1: only records where something did not look like one of the model's classes",
    },
]


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def openapi_document(config: ServiceConfig, models: list[str]) -> dict[str, Any]:
    secured = _AUTH
    legacy_ok = _text("the predicted digit", "The digit is recognized as : 7.\n")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "digitrec",
            "version": "1.0.0",
            "description": "Handwritten digit and clothing recognition; every prediction is recorded.",
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/api/v1/predict": {
                "post": {
                    "summary": "Predict the class of one or several images",
                    "parameters": [
                        {
                            "name": "model",
                            "in": "query",
                            "schema": {"type": "string", "enum": models, "default": "digits"},
                        },
                        {
                            "name": "source",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["api", "canvas", "upload"]},
                        },
                        {
                            "name": "version",
                            "in": "query",
                            "description": "answer with this version of the model instead of the serving one "
                            "(also accepted as the form field 'version' of a multipart upload); an unknown "
                            "version is a 404 whose body lists available_versions; when the service has an API "
                            "token, a version other than the serving one needs it (401 without)",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"},
                        },
                    ],
                    "requestBody": _image_body(),
                    "responses": {
                        "200": _json("PredictResponse", "one prediction per image, all stored"),
                        "207": _json(
                            "PredictResponse",
                            "several images, some unusable: the usable ones predicted and stored "
                            "(predictions), each unusable one in errors, naming its file",
                        ),
                        "400": _json(
                            "PredictFailure",
                            "the request is malformed, or (several images) none was usable: errors per image",
                        ),
                        **_errors(404, 413, 415, 503),
                    },
                }
            },
            "/api/v1/read": {
                "post": {
                    "summary": "Read the number written in an image: its digits left to right, each with its box",
                    "description": "Takes what predict takes. The digits are found in a row (strokes of one digit "
                    "merged, touching digits split), read in one batch, and each mark that is none of the "
                    "model's classes is refused: left out of text and listed in refused. One image answers a "
                    "Reading; several answer readings and errors, with the statuses of predict. Each reading is "
                    "one record; its correction is the right text. Digit models only (400 cannot_read).",
                    "parameters": [
                        {
                            "name": "model",
                            "in": "query",
                            "schema": {"type": "string", "enum": models, "default": "digits"},
                        },
                        {
                            "name": "source",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["api", "canvas", "upload"]},
                        },
                        {
                            "name": "version",
                            "in": "query",
                            "description": "as for predict",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"},
                        },
                    ],
                    "requestBody": _image_body(),
                    "responses": {
                        "200": _json("Reading", "one image: its reading, stored as one record"),
                        "207": _json("ReadResponse", "several images, some unusable: readings and errors"),
                        "400": _json("Error", "malformed request, no digit found, or not a digit model"),
                        **_errors(404, 413, 415, 503),
                    },
                }
            },
            "/api/v1/records": {
                "get": {
                    "summary": "Records, newest first",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "next_cursor of the previous page",
                        },
                        *_FILTER_PARAMETERS,
                    ],
                    "responses": {
                        "200": _json("RecordPage", "a page of records (matching the filters, when given)"),
                        **_errors(400, 401),
                    },
                }
            },
            "/api/v1/records/{record_id}": {
                "get": {
                    "summary": "One record",
                    "security": secured,
                    "parameters": [_ID],
                    "responses": {"200": _json("Record", "the record"), **_errors(401, 404)},
                },
                "delete": {
                    "summary": "Delete the record for good: record, image, upload file, spooled copies (admin)",
                    "security": secured,
                    "parameters": [_ID],
                    "responses": {"200": {"description": "deleted (what was removed where)"}, **_errors(401, 403, 404)},
                },
            },
            "/api/v1/records/{record_id}/image": {
                "get": {
                    "summary": "The request's stored PNG (this replica's upload file, else the store's copy)",
                    "security": secured,
                    "parameters": [_ID],
                    "responses": {
                        "200": {"description": "PNG", "content": {"image/png": {}}},
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/records/{record_id}/preview": {
                "get": {
                    "summary": "The 28x28 image the model saw for this record (white on black PNG)",
                    "security": secured,
                    "parameters": [_ID],
                    "responses": {
                        "200": {"description": "PNG", "content": {"image/png": {}}},
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/records/{record_id}/correction": {
                "post": {
                    "summary": (
                        "Say what was right: the label of a one-digit record, the digits (text) of a reading; "
                        "null removes the correction"
                    ),
                    "security": secured,
                    "parameters": [_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "description": "label for a one-digit record, text for a reading",
                                    "properties": {
                                        "label": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": 9,
                                            "nullable": True,
                                        },
                                        "text": {"type": "string", "pattern": "^[0-9]+$", "nullable": True},
                                        "correction_key": {
                                            "type": "string",
                                            "description": "the key the prediction's answer carried (no "
                                            "reviewer token needed with it); also the X-Correction-Key header",
                                        },
                                    },
                                }
                            },
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"label": {"type": "integer"}, "text": {"type": "string"}},
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": _json("Record", "the corrected record (the submitter gets only the correction)"),
                        **_errors(400, 403, 404, 429),
                    },
                }
            },
            "/api/v1/records/{record_id}/correction/reject": {
                "post": {
                    "summary": 'A reviewer rejects a correction ({"rejected": true}; false restores it): '
                    "fine-tuning skips it",
                    "security": secured,
                    "parameters": [_ID],
                    "responses": {"200": _json("Record", "the record"), **_errors(400, 401, 403, 404, 409)},
                }
            },
            "/api/v1/session": {
                "post": {
                    "summary": 'Exchange a token ({"token": ...}) for an HttpOnly, SameSite=Strict session cookie',
                    "responses": {"200": {"description": "the role of the token"}, **_errors(401)},
                },
                "get": {
                    "summary": "The role this request has, and whether the service is protected",
                    "responses": {"200": {"description": "role"}},
                },
                "delete": {
                    "summary": "End the session (clears the cookie)",
                    "responses": {"200": {"description": "signed out"}},
                },
            },
            "/api/v1/models": {
                "get": {
                    "summary": "The models, their versions, which one serves and since when",
                    "responses": {"200": _json("ModelList", "every configured model")},
                }
            },
            "/api/v1/models/{name}/reload": {
                "post": {
                    "summary": "Serve the version promoted on disk now (without waiting for the next poll)",
                    "description": "Loads and warms the promoted version beside the serving one, switches, and "
                    "unloads the old one once its requests are done. A version that fails to load leaves "
                    "the old one serving (500 reload_failed).",
                    "security": secured,
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _json("ReloadResult", "the version serving now"),
                        **_errors(401, 404, 500, 503),
                    },
                }
            },
            "/api/v1/models/{name}/promote": {
                "post": {
                    "summary": 'Promote {"version": "<id>"} on disk and serve it now (admin)',
                    "security": secured,
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _json("ReloadResult", "the version serving now"),
                        **_errors(400, 401, 403, 404, 409),
                    },
                }
            },
            "/api/v1/models/{name}/rollback": {
                "post": {
                    "summary": "Serve the version that served before the current one (admin)",
                    "security": secured,
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _json("ReloadResult", "the version serving now"),
                        **_errors(401, 403, 404, 409),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3 document"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: models loaded, records durable (store or spool)",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
            "/digitRecognition/localService/v1.0": {
                "post": {
                    "summary": "Seed-compatible digit prediction",
                    "requestBody": _image_body(),
                    "responses": {"200": legacy_ok, **_errors(400, 413, 415)},
                }
            },
            "/digitRecognition/localService/v1.1": {
                "post": {
                    "summary": "Seed-compatible digit prediction",
                    "requestBody": _image_body(),
                    "responses": {"200": legacy_ok, **_errors(400, 413, 415)},
                }
            },
            "/uploads": {
                "get": {
                    "summary": "Seed-compatible upload form",
                    "responses": {"200": {"description": "HTML"}},
                },
                "post": {
                    "summary": "Seed-compatible upload and predict",
                    "requestBody": _image_body(),
                    "responses": {
                        "200": _text("the seed's script output", "Model restored.\nrecognised result:\n7\n"),
                        **_errors(400, 413, 415),
                    },
                },
            },
            "/uploads/{name}": {
                "get": {
                    "summary": "A stored upload, named <record id>.png",
                    "security": secured,
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "PNG", "content": {"image/png": {}}},
                        **_errors(401, 404),
                    },
                }
            },
            "/uploads/record": {
                "get": {
                    "summary": "The latest 100 records as tab-separated text",
                    "security": secured,
                    "responses": {
                        "200": {"description": "text", "content": {"text/plain": {}}},
                        **_errors(401),
                    },
                }
            },
            "/": {"get": {"summary": "The drawing page", "responses": {"200": {"description": "HTML"}}}},
            "/records": {
                "get": {
                    "summary": "The records page (same filter parameters as /api/v1/records)",
                    "security": secured,
                    "parameters": _FILTER_PARAMETERS,
                    "responses": {"200": {"description": "HTML"}},
                }
            },
            "/api/v1/dashboard": {
                "get": {
                    "summary": "Dashboard figures for one model (and version) over the last days (docs/dashboard.md)",
                    "security": secured,
                    "parameters": [
                        {"name": "model", "in": "query", "schema": {"type": "string"}, "description": "default digits"},
                        {"name": "version", "in": "query", "schema": {"type": "string"}, "description": "all if unset"},
                        {
                            "name": "days",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 7},
                            "description": "today (UTC) and the days before it",
                        },
                    ],
                    "responses": {
                        "200": {"description": "totals, per hour/day, versions, histogram, confusion, review"},
                        **_errors(400, 401),
                    },
                }
            },
            "/dashboard": {"get": {"summary": "The dashboard page", "responses": {"200": {"description": "HTML"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "an error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "Prediction": {
                    "type": "object",
                    "properties": {
                        "request_id": {
                            "type": "string",
                            "format": "uuid",
                            "description": "the record's id, as in /api/v1/records",
                        },
                        "id": {
                            "type": "string",
                            "format": "uuid",
                            "deprecated": True,
                            "description": "the same value as request_id, kept for existing clients",
                        },
                        "index": {"type": "integer", "description": "position of the image in the request"},
                        "label": {"type": "integer"},
                        "name": {"type": "string"},
                        "confidence": {"type": "number"},
                        "probabilities": {
                            "type": "array",
                            "items": {"type": "number"},
                            "minItems": 10,
                            "maxItems": 10,
                        },
                        "model": {"type": "string"},
                        "model_version": {"type": "string"},
                        "file_name": {"type": "string", "nullable": True},
                        "request_time": {"type": "string", "format": "date-time"},
                        "elapsed_ms": {"type": "number"},
                        "preview_png": {"type": "string", "description": "data URL of the 28x28 model input"},
                        "image_url": {"type": "string"},
                        "in_domain": {
                            "type": "boolean",
                            "description": "false: the image looks like none of the model's classes (label is "
                            "only the nearest one)",
                        },
                        "domain_score": {"type": "number", "description": "the score behind in_domain"},
                        "several_digits": {
                            "type": "boolean",
                            "description": "the image seems to hold several digits (use /api/v1/read)",
                        },
                        "hint": {"type": "string", "description": "only with several_digits: what to do instead"},
                    },
                },
                "Box": {
                    "type": "object",
                    "description": "in the pixels of the image as sent",
                    "properties": {
                        "x": {"type": "integer"},
                        "y": {"type": "integer"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                    },
                },
                "ReadMark": {
                    "type": "object",
                    "description": "one digit read, or one mark refused as not a digit",
                    "properties": {
                        "box": {"$ref": "#/components/schemas/Box"},
                        "label": {"type": "integer", "description": "for a refused mark: the nearest class"},
                        "name": {"type": "string"},
                        "confidence": {"type": "number"},
                        "probabilities": {"type": "array", "items": {"type": "number"}},
                        "in_domain": {"type": "boolean"},
                        "domain_score": {"type": "number", "nullable": True},
                        "preview_png": {"type": "string", "description": "data URL of the 28x28 the model saw"},
                    },
                },
                "Reading": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string", "format": "uuid", "description": "the record's id"},
                        "index": {"type": "integer", "description": "position of the image in the request"},
                        "model": {"type": "string"},
                        "model_version": {"type": "string"},
                        "text": {
                            "type": "string",
                            "description": "the digits read, left to right; refused marks "
                            "are left out; empty when every mark was refused",
                        },
                        "confidence": {"type": "number", "description": "of the whole reading"},
                        "digits": {"type": "array", "items": {"$ref": "#/components/schemas/ReadMark"}},
                        "refused": {"type": "array", "items": {"$ref": "#/components/schemas/ReadMark"}},
                        "file_name": {"type": "string", "nullable": True},
                        "request_time": {"type": "string", "format": "date-time"},
                        "elapsed_ms": {"type": "number"},
                        "image_url": {"type": "string"},
                        "correction_key": {
                            "type": "string",
                            "description": "lets this client correct this reading (send it back with the correction)",
                        },
                    },
                },
                "ReadResponse": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "model_version": {"type": "string", "nullable": True},
                        "elapsed_ms": {"type": "number"},
                        "readings": {"type": "array", "items": {"$ref": "#/components/schemas/Reading"}},
                        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ImageError"}},
                    },
                },
                "PredictResponse": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "model_version": {"type": "string", "description": "the version that answered"},
                        "elapsed_ms": {"type": "number"},
                        "predictions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Prediction"},
                        },
                        "errors": {
                            "type": "array",
                            "description": "only with several images: one entry per unusable image",
                            "items": {"$ref": "#/components/schemas/ImageError"},
                        },
                    },
                },
                "ImageError": {
                    "type": "object",
                    "required": ["index", "status", "error", "message"],
                    "properties": {
                        "index": {"type": "integer"},
                        "file_name": {"type": "string", "nullable": True},
                        "status": {"type": "integer", "description": "what this image alone would have got"},
                        "error": {"type": "string"},
                        "message": {"type": "string", "description": "starts with the file name"},
                    },
                },
                "PredictFailure": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"$ref": "#/components/schemas/PredictResponse"},
                    ]
                },
                "Record": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string", "format": "uuid"},
                        "request_time": {"type": "string", "format": "date-time"},
                        "day": {"type": "string"},
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                        "label": {"type": "integer"},
                        "class_name": {"type": "string"},
                        "confidence": {"type": "number"},
                        "probabilities": {"type": "array", "items": {"type": "number"}},
                        "source": {"type": "string"},
                        "file_name": {"type": "string", "nullable": True},
                        "image_path": {"type": "string", "nullable": True},
                        "image_sha256": {"type": "string", "nullable": True},
                        "processing_ms": {"type": "number"},
                        "corrected_label": {"type": "integer", "nullable": True},
                        "kind": {"type": "string", "enum": ["digit", "reading"]},
                        "text": {"type": "string", "nullable": True, "description": "a reading's digits"},
                        "digits": {"type": "array", "items": {"$ref": "#/components/schemas/Mark"}},
                        "refused": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Mark"},
                            "description": "a reading's marks that did not look like digits",
                        },
                        "in_domain": {
                            "type": "boolean",
                            "nullable": True,
                            "description": "false when something was refused; null when not judged",
                        },
                        "domain_score": {"type": "number", "nullable": True},
                        "corrected_text": {"type": "string", "nullable": True, "description": "a reading's correction"},
                        "image_url": {"type": "string", "nullable": True},
                        "preview_url": {"type": "string", "nullable": True},
                    },
                },
                "Mark": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "integer"},
                        "confidence": {"type": "number"},
                        "box": {
                            "type": "object",
                            "description": "in the input image's pixels",
                            "properties": {k: {"type": "integer"} for k in ("x", "y", "width", "height")},
                        },
                        "in_domain": {"type": "boolean", "nullable": True},
                        "domain_score": {"type": "number", "nullable": True},
                    },
                },
                "ModelVersion": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "string"},
                        "promoted": {"type": "boolean", "description": "named by promoted.json (or the default)"},
                        "serving": {"type": "boolean", "description": "answering requests in this process now"},
                        "loaded": {"type": "boolean"},
                        "promoted_at": {"type": "string", "format": "date-time", "nullable": True},
                        "parent": {"type": "string", "nullable": True},
                        "created": {"type": "string", "nullable": True},
                        "dataset": {"type": "string", "nullable": True},
                        "shipped": {"type": "boolean", "description": "one of the models shipped with digitrec"},
                        "test_accuracy": {"type": "number"},
                        "test_examples": {"type": "integer"},
                        "evaluation": {"type": "object"},
                        "corrections_used": {"type": "integer"},
                    },
                },
                "Model": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "state": {"type": "string", "enum": ["loading", "loaded", "failed"]},
                        "version": {"type": "string", "description": "the version serving in this process"},
                        "promoted_version": {"type": "string", "nullable": True},
                        "versions": {"type": "array", "items": {"$ref": "#/components/schemas/ModelVersion"}},
                        "served": {
                            "type": "array",
                            "description": "which version served from when, since the process started",
                            "items": {
                                "type": "object",
                                "properties": {"version": {"type": "string"}, "since": {"type": "string"}},
                            },
                        },
                        "reload_error": {"type": "string"},
                        "class_names": {"type": "array", "items": {"type": "string"}},
                        "test_accuracy": {"type": "number"},
                    },
                },
                "ModelList": {
                    "type": "object",
                    "properties": {
                        "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                        "default": {"type": "string"},
                    },
                },
                "ReloadResult": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "version": {"type": "string"},
                        "previous": {"type": "string", "nullable": True},
                        "changed": {"type": "boolean"},
                        "load_seconds": {"type": "number"},
                        "model_info": {"$ref": "#/components/schemas/Model"},
                    },
                },
                "RecordPage": {
                    "type": "object",
                    "properties": {
                        "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                        "next_cursor": {"type": "string", "nullable": True},
                    },
                },
            },
        },
    }
