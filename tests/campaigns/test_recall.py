"""Recall: the churn reason read from the history (or set by staff), the daily pick of at-risk and
churned members per playbook with its cooldown, and who came back against the control group."""

from datetime import timedelta

import pytest

from campaigns.models import CampaignStatus, ChurnReason, Delivery, DeliveryStatus, RecallPlaybook
from campaigns.recall import member_churn_reason_set, members_with_reason, recall_results, recall_run
from crm.core.exceptions import ApplicationError
from members.models import EventKind
from members.models_layers import LifecycleStage, MemberScore
from tests.factories import MemberEventFactory, MemberFactory

pytestmark = pytest.mark.django_db


def event(member, kind, when, **payload):
    amount = None if kind not in (EventKind.PURCHASE, EventKind.REFUND) else 99
    return MemberEventFactory(member=member, kind=kind, occurred_at=when, amount=amount, payload=payload)


def at_risk(*members, stage=LifecycleStage.AT_RISK):
    for member in members:
        MemberScore.objects.create(member=member, lifecycle_stage=stage)


def running_playbook(reason, **campaign_fields):
    playbook = RecallPlaybook.objects.select_related("campaign").get(reason=reason)
    for name, value in {
        "status": CampaignStatus.RUNNING,
        "channel": "email",
        "holdout_percent": 0,
        **campaign_fields,
    }.items():
        setattr(playbook.campaign, name, value)
    playbook.campaign.save()
    return playbook


def test_the_reason_is_read_from_the_history_and_staff_override_it(now, supervisor):
    quality, price, service, refund, lapsed, staff, unknown, old = (MemberFactory() for _ in range(8))
    event(quality, EventKind.COMPLAINT, now - timedelta(days=20), category="quality")
    event(price, EventKind.COMPLAINT, now - timedelta(days=20), category="price")
    event(service, EventKind.COMPLAINT, now - timedelta(days=20), topic="delivery")
    event(refund, EventKind.REFUND, now - timedelta(days=20))
    event(lapsed, EventKind.PURCHASE, now - timedelta(days=100), category="tea")
    event(lapsed, EventKind.PURCHASE, now - timedelta(days=10), category="snacks")
    event(staff, EventKind.COMPLAINT, now - timedelta(days=20), category="quality")
    member_churn_reason_set(member=staff, reason=ChurnReason.PRICE, actor=supervisor, note="told us on the phone")
    event(old, EventKind.COMPLAINT, now - timedelta(days=400), category="quality")  # beyond the history window

    reasons = dict(members_with_reason(now=now).values_list("pk", "churn_reason"))

    assert [reasons[m.pk] for m in (quality, price, service, refund, lapsed, staff, unknown, old)] == [
        "quality",
        "price",
        "service",
        "quality",
        "competitor",
        "price",
        "unknown",
        "unknown",
    ]


def test_an_unknown_reason_is_refused(supervisor):
    with pytest.raises(ApplicationError):
        member_churn_reason_set(member=MemberFactory(), reason="weather", actor=supervisor)


def test_the_daily_run_picks_at_risk_and_churned_members_once_per_cooldown(now):
    playbook = running_playbook("unknown")
    risky, churned, active = (MemberFactory(email=f"r{i}@example.com") for i in range(3))
    at_risk(risky)
    at_risk(churned, stage=LifecycleStage.CHURNED)
    at_risk(active, stage=LifecycleStage.ACTIVE)
    running_playbook("quality")  # no member of this reason: plans nothing

    assert recall_run(now=now) == {"quality": 0, "unknown": 2}
    assert recall_run(now=now + timedelta(days=1)) == {"quality": 0, "unknown": 0}  # cooldown
    later = now + timedelta(days=playbook.cooldown_days + 1)
    assert recall_run(now=later) == {"quality": 0, "unknown": 2}
    assert set(Delivery.objects.values_list("member_id", flat=True)) == {risky.pk, churned.pk}


def test_a_paused_playbook_picks_nobody(now):
    running_playbook("unknown", status=CampaignStatus.PAUSED)
    at_risk(MemberFactory())

    assert recall_run(now=now) == {}


def test_came_back_is_measured_against_the_control_group(now):
    running_playbook("unknown", holdout_percent=50)
    members = [MemberFactory(email=f"c{i}@example.com") for i in range(60)]
    at_risk(*members)
    recall_run(now=now)
    rows = Delivery.objects.filter(member__in=members)
    control = list(rows.filter(holdout=True).values_list("member_id", flat=True))
    treated = list(rows.filter(holdout=False, status=DeliveryStatus.QUEUED).values_list("member_id", flat=True))
    assert control and treated and len(control) + len(treated) == 60
    # Three contacted members and one of the control group come back within 14 days; one too late.
    for member_id in treated[:3] + control[:1]:
        event(MemberFactory.build(pk=member_id), EventKind.PURCHASE, now + timedelta(days=3))
    event(MemberFactory.build(pk=treated[3]), EventKind.CHECK_IN, now + timedelta(days=20))

    [result] = recall_results()

    assert (result.reason, result.contacted, result.came_back) == ("unknown", len(treated), 3)
    assert (result.control, result.control_came_back) == (len(control), 1)
    assert result.rate == pytest.approx(300 / len(treated))
