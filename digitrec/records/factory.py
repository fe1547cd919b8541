"""Choose and open the configured store: SQLite by default, Cassandra when contact points are set."""

from __future__ import annotations

from digitrec.records.config import RecordsConfig
from digitrec.records.store import RecordStore


def open_primary(config: RecordsConfig) -> RecordStore:
    """The engine store alone, without the spool (for `records init-db`, `list` and `export`)."""
    if config.engine == "cassandra":
        from digitrec.records.cassandra_store import cassandraModule

        return cassandraModule(config=config)
    from digitrec.records.sqlite_store import SQLiteStore

    return SQLiteStore(config.sqlite_path, config.sqlite_synchronous, config.write_timeout)


def open_store(config: RecordsConfig | None = None) -> RecordStore:
    """The store the service writes to: the engine store wrapped in the durable spool (unless disabled)."""
    config = config or RecordsConfig.from_env()
    primary = open_primary(config)
    if not config.spool:
        return primary
    from digitrec.records.spool import SpooledStore

    try:
        return SpooledStore(
            primary,
            config.spool_path,
            synchronous=config.sqlite_synchronous,
            retry_min=config.spool_retry_min,
            retry_max=config.spool_retry_max,
            write_timeout=config.write_timeout,
        )
    except BaseException:
        primary.close()
        raise
