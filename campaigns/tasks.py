"""Thin Celery tasks: they call campaigns services and hold only retry logic."""

from celery import shared_task
from django.db import OperationalError


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def dispatch_deliveries() -> int:
    """Every minute: send due deliveries in bounded batches. Idempotent: rows are claimed under
    SKIP LOCKED and a row marked sent is never sent again, so a redelivered task is harmless."""
    from campaigns.outbox import deliveries_dispatch

    return deliveries_dispatch().handled


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,), max_retries=3)
def start_due_campaigns() -> int:
    """Every minute: start approved campaigns whose start has come (planning their deliveries) and
    finish those whose end has passed."""
    from campaigns.services import campaigns_start_due

    return campaigns_start_due()


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,), max_retries=3)
def run_journeys() -> int:
    """Every 15 minutes: plan the messages and gifts of running journeys (idempotent per occasion)."""
    from campaigns.journeys import journeys_run

    return journeys_run().total


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OperationalError,), max_retries=3)
def run_recall() -> int:
    """Daily: queue the recall playbooks' messages (a member is picked once per cooldown)."""
    from campaigns.recall import recall_run

    return sum(recall_run().values())
