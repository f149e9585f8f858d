"""The campaign status machine: who may move a campaign where, and every move recorded."""

from datetime import timedelta

import pytest

from campaigns.models import CampaignStatus, CampaignTransition, Delivery, DeliveryStatus, SkipReason
from campaigns.services import campaign_save, campaign_transition, campaigns_start_due
from crm.core.exceptions import ApplicationError
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory, segment_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(members, operator):
    campaign = CampaignFactory(segment=segment_of(members), created_by=operator)
    MessageTemplateFactory(campaign=campaign)
    return campaign


def test_operator_submits_supervisor_approves_and_every_move_is_recorded(draft, operator, supervisor, now):
    campaign_transition(campaign=draft, action="submit", actor=operator, note="please check")
    campaign_transition(campaign=draft, action="approve", actor=supervisor)

    draft.refresh_from_db()
    assert draft.status == CampaignStatus.SCHEDULED
    moves = list(
        CampaignTransition.objects.filter(campaign=draft)
        .order_by("pk")
        .values_list("from_status", "to_status", "actor")
    )
    assert moves == [
        (CampaignStatus.DRAFT, CampaignStatus.AWAITING_APPROVAL, operator.pk),
        (CampaignStatus.AWAITING_APPROVAL, CampaignStatus.SCHEDULED, supervisor.pk),
    ]
    assert CampaignTransition.objects.filter(campaign=draft, note="please check").exists()


def test_an_operator_cannot_approve(draft, operator):
    campaign_transition(campaign=draft, action="submit", actor=operator)

    with pytest.raises(ApplicationError):
        campaign_transition(campaign=draft, action="approve", actor=operator)

    draft.refresh_from_db()
    assert draft.status == CampaignStatus.AWAITING_APPROVAL
    assert CampaignTransition.objects.filter(campaign=draft).count() == 1


def test_an_auditor_cannot_submit(draft, auditor):
    with pytest.raises(ApplicationError):
        campaign_transition(campaign=draft, action="submit", actor=auditor)


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (CampaignStatus.DRAFT, "approve"),
        (CampaignStatus.DRAFT, "pause"),
        (CampaignStatus.SCHEDULED, "submit"),
        (CampaignStatus.RUNNING, "resume"),
        (CampaignStatus.FINISHED, "resume"),
        (CampaignStatus.CANCELLED, "submit"),
        (CampaignStatus.FINISHED, "cancel"),
    ],
)
def test_illegal_transitions_are_refused_and_not_recorded(draft, supervisor, status, action):
    type(draft).objects.filter(pk=draft.pk).update(status=status)

    with pytest.raises(ApplicationError):
        campaign_transition(campaign=draft, action=action, actor=supervisor)

    draft.refresh_from_db()
    assert draft.status == status
    assert not CampaignTransition.objects.filter(campaign=draft).exists()


def test_staff_cannot_start_a_campaign_only_the_scheduler_can(draft, operator, supervisor, now):
    campaign_transition(campaign=draft, action="submit", actor=operator)
    campaign_transition(campaign=draft, action="approve", actor=supervisor)

    with pytest.raises(ApplicationError):
        campaign_transition(campaign=draft, action="start", actor=supervisor)
    with pytest.raises(ApplicationError):
        campaign_transition(campaign=draft, action="cancel")  # the scheduler may not cancel

    assert campaigns_start_due(now=now) == 1
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.RUNNING
    start = CampaignTransition.objects.get(campaign=draft, action="start")
    assert start.actor is None
    assert start.from_status == CampaignStatus.SCHEDULED
    assert "planned=3" in start.note
    assert Delivery.objects.filter(campaign=draft, status=DeliveryStatus.QUEUED).count() == 3


def test_a_campaign_starts_only_when_its_start_has_come(draft, operator, supervisor, now):
    campaign_transition(campaign=draft, action="submit", actor=operator)
    campaign_transition(campaign=draft, action="approve", actor=supervisor)

    assert campaigns_start_due(now=draft.starts_at - timedelta(minutes=1)) == 0
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.SCHEDULED


def test_pause_resume_and_cancel_skip_what_was_still_queued(draft, operator, supervisor, now):
    campaign_transition(campaign=draft, action="submit", actor=operator)
    campaign_transition(campaign=draft, action="approve", actor=supervisor)
    campaigns_start_due(now=now)

    campaign_transition(campaign=draft, action="pause", actor=operator)
    with pytest.raises(ApplicationError):
        campaign_transition(campaign=draft, action="resume", actor=operator)
    campaign_transition(campaign=draft, action="resume", actor=supervisor)
    campaign_transition(campaign=draft, action="cancel", actor=supervisor, note="wrong offer")

    draft.refresh_from_db()
    assert draft.status == CampaignStatus.CANCELLED
    assert set(Delivery.objects.filter(campaign=draft).values_list("status", "skip_reason")) == {
        (DeliveryStatus.SKIPPED, SkipReason.CANCELLED)
    }
    assert list(CampaignTransition.objects.filter(campaign=draft).order_by("pk").values_list("action", flat=True)) == [
        "submit",
        "approve",
        "start",
        "pause",
        "resume",
        "cancel",
    ]


def test_the_scheduler_finishes_a_campaign_at_its_end(draft, operator, supervisor, now):
    draft.ends_at = draft.starts_at + timedelta(days=1)
    draft.save(update_fields=["ends_at"])
    campaign_transition(campaign=draft, action="submit", actor=operator)
    campaign_transition(campaign=draft, action="approve", actor=supervisor)
    campaigns_start_due(now=now)

    campaigns_start_due(now=draft.ends_at)

    draft.refresh_from_db()
    assert draft.status == CampaignStatus.FINISHED
    assert set(Delivery.objects.filter(campaign=draft).values_list("skip_reason", flat=True)) == {SkipReason.ENDED}


def test_only_drafts_can_be_edited(draft, operator):
    campaign_transition(campaign=draft, action="submit", actor=operator)
    draft.name = "changed"

    with pytest.raises(ApplicationError):
        campaign_save(campaign=draft, actor=operator)


def test_submitting_needs_an_audience_and_a_message(operator):
    campaign = CampaignFactory()

    with pytest.raises(ApplicationError) as error:
        campaign_transition(campaign=campaign, action="submit", actor=operator)

    assert len(error.value.extra["problems"]) == 2
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_an_uploaded_list_is_resolved_at_submit_and_unknown_numbers_are_noted(members, operator):
    campaign = CampaignFactory(member_numbers=f"{members[0].external_id}\n{members[1].external_id}, NOPE-1")
    MessageTemplateFactory(campaign=campaign)

    record = campaign_transition(campaign=campaign, action="submit", actor=operator)

    assert "NOPE-1" in record.note
    from campaigns.selectors import campaign_audience_member_ids

    assert set(campaign_audience_member_ids(campaign=campaign)) == {members[0].pk, members[1].pk}
