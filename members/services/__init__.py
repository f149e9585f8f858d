"""Every write to members, tags and the behaviour log goes through these functions."""

from .events import EventInput, IngestResult, events_ingest, member_rollups_rebuild

__all__ = ["EventInput", "IngestResult", "events_ingest", "member_rollups_rebuild"]
