"""What every handler can reach: settings, models, store, uploads, metrics and the prediction pipeline."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from digitrec.records.record import PredictionRecord
from digitrec.records.store import RecordStore
from digitrec.service.access import SESSION_COOKIE, SESSION_SECONDS, AccessDenied, AccessPolicy
from digitrec.service.config import ServiceConfig
from digitrec.service.metrics import ServiceMetrics
from digitrec.service.models import ModelRegistry
from digitrec.service.predictor import Predictor
from digitrec.service.rate_limit import RateLimiter
from digitrec.service.responses import ApiError
from digitrec.service.uploads import UploadStore


@dataclasses.dataclass
class ServiceContext:
    config: ServiceConfig
    models: ModelRegistry
    store: RecordStore
    uploads: UploadStore
    metrics: ServiceMetrics
    predictor: Predictor
    access: AccessPolicy
    correction_limit: RateLimiter

    def require(self, request: Request, role: str = "viewer") -> str:
        """The request's role when it is at least ``role``; else 401 (no valid token) or 403 (too low)."""
        try:
            return self.access.require(request, role)
        except AccessDenied as denied:
            headers = {"WWW-Authenticate": 'Bearer realm="digitrec"'} if denied.status == 401 else {}
            code = "unauthorized" if denied.status == 401 else "forbidden"
            raise ApiError(denied.status, code, denied.message, headers) from None

    def require_predict(self, request: Request) -> None:
        """401 unless predictions are open or the request carries DIGITREC_PREDICT_TOKEN (or a role token)."""
        if not self.access.may_predict(request):
            raise ApiError(
                401,
                "unauthorized",
                "predictions on this service need the header 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="digitrec"'},
            )

    def record_if_visible(self, record_id: str) -> PredictionRecord | None:
        """The record, or None for an unknown or malformed id (the caller answers both alike)."""
        try:
            request_id = uuid.UUID(record_id)
        except ValueError:
            return None
        return self.store.get(request_id)

    @property
    def protected(self) -> bool:
        """Whether records need a token (pages then show the token field)."""
        return not self.access.open

    def record_or_404(self, record_id: str) -> PredictionRecord:
        try:
            request_id = uuid.UUID(record_id)
        except ValueError:
            raise ApiError(404, "not_found", "no record with this id") from None
        record = self.store.get(request_id)
        if record is None:
            raise ApiError(404, "not_found", "no record with this id")
        return record


def set_session_cookie(ctx: ServiceContext, request: Request, response: Response, role: str, token: str) -> None:
    """The session cookie for ``role``: HttpOnly (scripts never see it), SameSite=Strict (no other site's
    page sends it), Secure when the client reached us over TLS."""
    response.set_cookie(
        SESSION_COOKIE,
        ctx.access.session_cookie(role, token),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=ctx.access.is_secure(request),
    )


Handler = Callable[..., Response]


@dataclasses.dataclass(frozen=True)
class Route:
    """One URL rule and the function that answers it."""

    path: str
    endpoint: str
    handler: Handler
    methods: tuple[str, ...] = ("GET",)

    def rule(self) -> Rule:
        return Rule(self.path, endpoint=self.endpoint, methods=list(self.methods))
