"""Request records: one record type, one store interface, an adapter per engine, a durable spool."""
