"""The partner REST API under /api/v1/: its URL router and the idempotency of its writes."""
