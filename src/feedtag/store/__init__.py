"""The store: schema and migrations, batched idempotent writer, search and aggregates,
retention, and the spool that keeps events through outages."""
