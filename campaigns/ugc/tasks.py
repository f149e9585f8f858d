"""Thin Celery tasks of member content."""

from celery import shared_task


@shared_task(acks_late=True)
def rescan_submissions() -> int:
    """Check the waiting submissions against the current sensitive-word list; return how many
    were newly flagged. Safe to run again: it only sets what the list finds now."""
    from campaigns.ugc.services import submissions_rescan

    return submissions_rescan()
