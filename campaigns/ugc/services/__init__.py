"""Every write of member content and co-creation polls (keyword-only functions in a transaction)."""

from campaigns.ugc.services.polls import PollCloseResult, poll_close, poll_open, poll_reward_key, poll_vote
from campaigns.ugc.services.submissions import (
    APPROVAL_EVENT_SOURCE,
    APPROVAL_EVENT_SUB_KIND,
    ImageInput,
    approval_event_external_id,
    sensitive_word_matcher,
    submission_create,
    submissions_approve,
    submissions_feature,
    submissions_reject,
    submissions_rescan,
)

__all__ = [
    "APPROVAL_EVENT_SOURCE",
    "APPROVAL_EVENT_SUB_KIND",
    "ImageInput",
    "PollCloseResult",
    "approval_event_external_id",
    "poll_close",
    "poll_open",
    "poll_reward_key",
    "poll_vote",
    "sensitive_word_matcher",
    "submission_create",
    "submissions_approve",
    "submissions_feature",
    "submissions_reject",
    "submissions_rescan",
]
