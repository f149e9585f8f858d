"""Thin Celery tasks of the health dashboard: call a service, hold only retry logic."""

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3)
def take_health_snapshot() -> str:
    """Nightly: the indicators of the day that just ended. Recomputing a day replaces it."""
    from crm.health.services import snapshot_take

    return snapshot_take().day.isoformat()


@shared_task(acks_late=True)
def check_community_alarms() -> list[int]:
    """Hourly: quiet groups, rising complaints, group exits. Returns the ids of alarms raised."""
    from crm.health.services import alarms_check

    return [alarm.pk for alarm in alarms_check()]


@shared_task(acks_late=True)
def check_channel_alarms() -> list[int]:
    """Every few minutes: a channel whose gateway keeps failing switches to its fallback."""
    from crm.health.services import alarms_check, check_channels

    return [alarm.pk for alarm in alarms_check(checks=[check_channels])]
