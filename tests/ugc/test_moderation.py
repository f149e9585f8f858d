"""Submitting, flagging and moderating member content; approval pays points once."""

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.ugc import services
from campaigns.ugc.models import (
    ModerationAction,
    ModerationDecision,
    SensitiveWord,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)
from crm.core.exceptions import ApplicationError
from loyalty.models import EntryKind, PointsEntry
from members.models import EventKind, MemberEvent
from tests.ugc.conftest import submit

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def earned(member) -> list[int]:
    return list(PointsEntry.objects.filter(member=member, kind=EntryKind.EARN).values_list("amount", flat=True))


def test_a_submission_waits_in_the_queue_unflagged_when_clean(member):
    submission = submit(member, title="新品测评", text="芒果味很好喝")

    assert (submission.status, submission.flagged, submission.flagged_words) == (SubmissionStatus.PENDING, False, [])
    assert submission.decided_at is None


def test_sensitive_words_flag_a_submission_before_anyone_sees_it(member):
    SensitiveWord.objects.create(word="加微信")
    SensitiveWord.objects.create(word="广告", is_active=False)

    submission = submit(member, title="福利", text="私聊加 微.信，广告位招租")

    assert submission.flagged
    assert submission.flagged_words == ["加微信"]


def test_a_word_added_later_applies_to_the_next_submission_and_a_rescan_flags_the_waiting_ones(member):
    before = submit(member, text="欢迎加微信")
    assert not before.flagged

    SensitiveWord.objects.create(word="加微信")
    after = submit(member, text="也请加微信")
    rescanned = services.submissions_rescan()

    assert after.flagged
    assert rescanned == 1
    before.refresh_from_db()
    assert (before.flagged, before.flagged_words) == (True, ["加微信"])


def test_the_same_external_id_from_the_same_source_is_the_same_submission(member):
    first, created = services.submission_create(member=member, kind="text", text="a", source="shop", external_id="p-1")
    again, created_again = services.submission_create(
        member=member, kind="text", text="different", source="shop", external_id="p-1"
    )
    other, created_other = services.submission_create(
        member=member, kind="text", text="a", source="pos", external_id="p-1"
    )

    assert (created, created_again, created_other) == (True, False, True)
    assert again.pk == first.pk and again.text == "a"
    assert other.pk != first.pk


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "poem"}, "kind"),
        ({"kind": SubmissionKind.REVIEW}, "rating"),
        ({"kind": SubmissionKind.REVIEW, "rating": 6}, "rating"),
        ({"kind": SubmissionKind.TEXT, "rating": 4}, "rating"),
        ({"kind": SubmissionKind.TEXT, "text": "   "}, "text"),
        ({"kind": SubmissionKind.IMAGE, "text": ""}, "images"),
    ],
)
def test_bad_submissions_are_refused_field_by_field_and_nothing_is_saved(member, fields, field):
    with pytest.raises(ValidationError) as caught:
        submit(member, **{"text": "ok", **fields})

    assert field in caught.value.message_dict
    assert not Submission.objects.exists()


def test_uploaded_photos_are_stored_under_our_own_name_and_a_non_image_is_refused(member):
    photo = SimpleUploadedFile("我的照片 13800001111.png", PNG, content_type="image/png")
    submission = submit(member, kind=SubmissionKind.IMAGE, text="", images=[services.ImageInput(file=photo)])

    image = submission.images.get()
    assert (image.content_type, image.size, image.position) == ("image/png", len(PNG), 0)
    assert image.file.name.endswith(f"/{submission.pk}-0.png") and "1380000" not in image.file.name
    image.file.delete(save=False)

    fake = SimpleUploadedFile("x.png", b"<?php echo 1; ?>", content_type="image/png")
    with pytest.raises(ValidationError) as caught:
        submit(member, kind=SubmissionKind.IMAGE, text="", images=[services.ImageInput(file=fake)])
    assert "images.0" in caught.value.message_dict


def test_approving_records_one_approval_event_and_the_earn_rule_pays_once(
    member, operator, ugc_rule, eager_tasks, django_capture_on_commit_callbacks
):
    submission = submit(member)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.submissions_approve(submission_ids=[submission.pk], actor=operator) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert services.submissions_approve(submission_ids=[submission.pk], actor=operator) == 0

    event = MemberEvent.objects.get(member=member)
    assert (event.kind, event.sub_kind, event.source) == (EventKind.UGC, "approved", "ugc-moderation")
    assert event.external_id == f"submission:{submission.pk}"
    assert earned(member) == [20]
    submission.refresh_from_db()
    assert (submission.status, submission.decided_by, submission.decided_at) == (
        SubmissionStatus.APPROVED,
        operator,
        event.occurred_at,
    )
    decision = ModerationDecision.objects.get(submission=submission)
    assert (decision.action, decision.actor, decision.at) == (ModerationAction.APPROVE, operator, event.occurred_at)


def test_rejected_then_approved_again_pays_once(
    member, operator, ugc_rule, eager_tasks, django_capture_on_commit_callbacks
):
    submission = submit(member)
    with django_capture_on_commit_callbacks(execute=True):
        services.submissions_approve(submission_ids=[submission.pk], actor=operator)
        services.submissions_reject(submission_ids=[submission.pk], actor=operator, reason="版权问题")
        services.submissions_approve(submission_ids=[submission.pk], actor=operator)

    assert earned(member) == [20]
    assert MemberEvent.objects.filter(member=member).count() == 1
    assert list(submission.decisions.order_by("id").values_list("action", flat=True)) == [
        "approve",
        "reject",
        "approve",
    ]


def test_bulk_approval_is_set_based_and_skips_what_is_approved_already(
    member, operator, ugc_rule, django_assert_max_num_queries
):
    submissions = [submit(member, text=f"第 {n} 条") for n in range(30)]
    services.submissions_approve(submission_ids=[submissions[0].pk], actor=operator)

    with django_assert_max_num_queries(12):
        approved = services.submissions_approve(submission_ids=[s.pk for s in submissions], actor=operator)

    assert approved == 29
    assert Submission.objects.filter(status=SubmissionStatus.APPROVED).count() == 30
    assert MemberEvent.objects.filter(kind=EventKind.UGC).count() == 30
    assert ModerationDecision.objects.count() == 30


def test_rejection_needs_a_reason_and_records_it(member, operator):
    submission = submit(member)

    with pytest.raises(ValidationError) as caught:
        services.submissions_reject(submission_ids=[submission.pk], actor=operator, reason="  ")
    assert "reason" in caught.value.message_dict

    assert services.submissions_reject(submission_ids=[submission.pk], actor=operator, reason="含广告") == 1
    submission.refresh_from_db()
    assert (submission.status, submission.reject_reason, submission.decided_by) == ("rejected", "含广告", operator)
    assert submission.decisions.get().reason == "含广告"
    assert not MemberEvent.objects.exists()


def test_only_approved_content_is_featured_and_rejecting_it_unfeatures_it(member, operator):
    pending, approved = submit(member), submit(member)
    services.submissions_approve(submission_ids=[approved.pk], actor=operator)

    assert services.submissions_feature(submission_ids=[pending.pk, approved.pk], actor=operator) == 1
    approved.refresh_from_db()
    assert approved.featured and approved.featured_at is not None

    services.submissions_reject(submission_ids=[approved.pk], actor=operator, reason="撤下")
    approved.refresh_from_db()
    assert (approved.featured, approved.featured_at) == (False, None)


def test_every_decision_needs_a_staff_member(member):
    submission = submit(member)

    with pytest.raises(ApplicationError):
        services.submissions_approve(submission_ids=[submission.pk], actor=None)
