"""Thin Celery tasks: take ids, call a service, hold only retry logic."""

from celery import shared_task


@shared_task(acks_late=True)
def expire_points() -> int:
    """Nightly: write the expiry entries of every lot whose expiry has passed."""
    from django.utils import timezone

    from loyalty.services import points_expire_due

    return points_expire_due(now=timezone.now())


@shared_task(acks_late=True)
def reconcile_points() -> int:
    """Nightly: report accounts whose cached balance drifted from their ledger."""
    from loyalty.services import points_reconcile

    return len(points_reconcile())
