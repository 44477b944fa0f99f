"""pgsieve: retrieval inside PostgreSQL."""
