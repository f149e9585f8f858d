"""Thin Celery tasks: take ids, call a service, hold only retry logic."""

from celery import shared_task


@shared_task(acks_late=True)
def rebuild_member_rollups() -> int:
    """Nightly: recompute every member's rollups from the behaviour log, range by range."""
    from members.selectors import member_id_ranges
    from members.services import member_rollups_rebuild

    return sum(member_rollups_rebuild(first_id=first, last_id=last) for first, last in member_id_ranges())
