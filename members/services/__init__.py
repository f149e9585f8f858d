"""Every write to members, tags and the behaviour log goes through these functions."""

from .events import EventInput, IngestResult, events_ingest, member_rollups_rebuild
from .imports import (
    ImportResult,
    events_import,
    import_job_create,
    import_job_run,
    import_jobs_fail_stuck,
    members_import,
)
from .members import member_save, member_upsert
from .tags import member_tags_add, member_tags_remove, tags_get_or_create

__all__ = [
    "EventInput",
    "ImportResult",
    "IngestResult",
    "events_import",
    "events_ingest",
    "import_job_create",
    "import_job_run",
    "import_jobs_fail_stuck",
    "member_rollups_rebuild",
    "member_tags_add",
    "member_save",
    "member_tags_remove",
    "member_upsert",
    "members_import",
    "tags_get_or_create",
]
