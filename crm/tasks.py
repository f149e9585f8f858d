"""Thin Celery tasks of the ops desk: take ids, call a service, hold only retry logic."""

from celery import shared_task


@shared_task(acks_late=True)
def prune_idempotency_keys() -> int:
    """Hourly: forget the responses of idempotent API requests older than 24 hours."""
    from crm.services import idempotency_keys_prune

    return idempotency_keys_prune()
