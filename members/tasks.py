"""Thin Celery tasks: take ids, call a service, hold only retry logic."""

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True)
def rebuild_member_rollups() -> int:
    """Nightly: recompute every member's rollups from the behaviour log, range by range."""
    from members.selectors import member_id_ranges
    from members.services import member_rollups_rebuild

    return sum(member_rollups_rebuild(first_id=first, last_id=last) for first, last in member_id_ranges())


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
)
def run_import_job(job_id: int) -> str:
    """Run an uploaded import. A second delivery finds the job claimed and does nothing."""
    from members.services import import_job_run

    return import_job_run(job_id=job_id).status


@shared_task(acks_late=True)
def fail_stuck_import_jobs() -> int:
    """Every 15 minutes: imports whose worker died are marked failed so staff can run them again."""
    from members.services import import_jobs_fail_stuck

    return import_jobs_fail_stuck()


# Layers, stages, churn scores and segments (issue 4) ------------------------------------------


@shared_task(acks_late=True)
def recompute_layers_full() -> int:
    """Nightly: every member's scores, layers, stages and tags, then the scheduled segments.

    With the setting CRM_LAYERS_FANOUT the member-id ranges are shared among the workers as
    Celery groups (recompute_layers_range); otherwise one worker runs them in turn.
    """
    from django.conf import settings

    from members.services.layers import layers_recompute_full, layers_recompute_full_fanout
    from members.services.segments import segments_refresh_all

    if getattr(settings, "CRM_LAYERS_FANOUT", False):
        # Several workers share the ranges; the run refreshes the segments when it publishes.
        return layers_recompute_full_fanout().pk
    run = layers_recompute_full()
    segments_refresh_all()
    return run.rows


@shared_task(acks_late=True)
def recompute_layers_incremental() -> int:
    """Hourly: members with new events since the last run, then the scheduled segments."""
    from members.services.layers import layers_recompute_incremental
    from members.services.segments import segments_refresh_all

    run = layers_recompute_incremental()
    if run is None:
        return 0
    segments_refresh_all()
    return run.rows


@shared_task(acks_late=True)
def refresh_segment(segment_id: int) -> int:
    """On demand from the admin: materialize one segment's members."""
    from members.models_layers import Segment
    from members.services.segments import segment_refresh

    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return 0
    return segment_refresh(segment=segment).members


@shared_task(acks_late=True)
def refresh_scheduled_segments() -> int:
    """After a fanned-out full run publishes: materialize the segments set to refresh on schedule."""
    from members.services.segments import segments_refresh_all

    return segments_refresh_all().rows


@shared_task(acks_late=True)
def recompute_layers_range(run_id: int, phase: str, first: int, last: int) -> None:
    """One member-id range of one phase of a full recompute shared by several workers."""
    from members.services.layers import layers_recompute_range

    layers_recompute_range(run_id=run_id, phase=phase, first=first, last=last)
