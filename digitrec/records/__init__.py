"""Request records: one record type, one store interface, an adapter per engine, a durable spool."""

from digitrec.records.config import RecordsConfig
from digitrec.records.factory import open_primary, open_store
from digitrec.records.record import PredictionRecord, new_request_id
from digitrec.records.store import Health, Page, RecordStore

__all__ = [
    "Health",
    "Page",
    "PredictionRecord",
    "RecordStore",
    "RecordsConfig",
    "new_request_id",
    "open_primary",
    "open_store",
]
