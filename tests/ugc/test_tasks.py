"""The background re-check of the queue, started from the sensitive-word admin."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from campaigns.ugc.models import SensitiveWord, Submission
from campaigns.ugc.tasks import rescan_submissions
from tests.ugc.conftest import submit

pytestmark = pytest.mark.django_db


def test_the_admin_action_queues_the_recheck_and_the_task_flags_and_unflags_the_waiting_ones(
    client, supervisor, member, eager_tasks, django_capture_on_commit_callbacks
):
    waiting = submit(member, text="扫码加微信")
    stale = submit(member, text="旧词")
    Submission.objects.filter(pk=stale.pk).update(flagged=True, flagged_words=["旧词"])
    word = SensitiveWord.objects.create(word="加微信")
    client.force_login(supervisor)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:ugc_sensitiveword_changelist"), {"action": "rescan", ACTION_CHECKBOX_NAME: [word.pk]}
        )

    waiting.refresh_from_db()
    stale.refresh_from_db()
    assert (waiting.flagged, waiting.flagged_words) == (True, ["加微信"])
    assert (stale.flagged, stale.flagged_words) == (False, [])
    assert rescan_submissions.delay().get() == 0  # nothing new the second time
