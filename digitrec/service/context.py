"""What every handler can reach: settings, models, store, uploads, metrics and the prediction pipeline."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from digitrec.records.record import PredictionRecord
from digitrec.records.store import RecordStore
from digitrec.service.config import ServiceConfig
from digitrec.service.metrics import ServiceMetrics
from digitrec.service.models import ModelRegistry
from digitrec.service.predictor import Predictor
from digitrec.service.responses import ApiError
from digitrec.service.security import require_token
from digitrec.service.uploads import UploadStore


@dataclasses.dataclass
class ServiceContext:
    config: ServiceConfig
    models: ModelRegistry
    store: RecordStore
    uploads: UploadStore
    metrics: ServiceMetrics
    predictor: Predictor

    def authorize(self, request: Request) -> None:
        require_token(request, self.config.api_token)

    def record_or_404(self, record_id: str) -> PredictionRecord:
        try:
            request_id = uuid.UUID(record_id)
        except ValueError:
            raise ApiError(404, "not_found", "no record with this id") from None
        record = self.store.get(request_id)
        if record is None:
            raise ApiError(404, "not_found", "no record with this id")
        return record


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
