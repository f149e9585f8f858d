"""seed_demo: realistic, deterministic demo data whose rollups equal a rebuild from the log, and the
state the nightly jobs and a few weeks of operations leave on top of it."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Max
from django.utils import timezone

from campaigns.ugc.models import Poll, PollStatus, Submission, SubmissionStatus
from crm.desk.models import Ticket, TicketMember
from loyalty.models import Coupon, PointsAccount, PointsEntry, RewardRedemption
from loyalty.services.points import points_reconcile
from members.models import EventKind, Member, MemberEvent, MemberTag
from members.models_layers import MemberScore
from members.services import member_rollups_rebuild

pytestmark = pytest.mark.django_db

ROLLUPS = ("id", "last_active_at", "last_interaction_at", "last_purchase_at", "orders_count", "total_spent")


def _seed(**options) -> str:
    """Members and behaviour only; the demo's operational state has its own test below."""
    out = StringIO()
    options.setdefault("behaviour_only", True)
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def _snapshot() -> tuple:
    members = list(
        Member.objects.order_by("external_id").values_list("external_id", "name", "phone", "city", "channel")
    )
    events = list(
        MemberEvent.objects.order_by("source", "external_id").values_list(
            "member__external_id", "kind", "sub_kind", "amount", "occurred_at", "source", "external_id"
        )
    )
    return members, events


def test_seeds_members_with_behaviour_whose_rollups_equal_a_rebuild():
    output = _seed(members=120, seed=7)

    assert Member.objects.count() == 120
    assert "Seeded 120 members" in output
    kinds = set(MemberEvent.objects.values_list("kind", flat=True))
    assert {EventKind.PURCHASE, EventKind.CHECK_IN, EventKind.INTERACTION, EventKind.MESSAGE_READ} <= kinds
    assert MemberEvent.objects.aggregate(latest=Max("occurred_at"))["latest"] < timezone.now()
    assert all(str(phone).startswith("+86") for phone in Member.objects.values_list("phone", flat=True))
    assert MemberTag.objects.exists()
    before = list(Member.objects.order_by("id").values_list(*ROLLUPS))

    member_rollups_rebuild(first_id=before[0][0], last_id=before[-1][0])

    assert list(Member.objects.order_by("id").values_list(*ROLLUPS)) == before


def test_personas_differ_in_how_active_members_are():
    _seed(members=200, seed=3)
    now = timezone.now()

    per_member = Member.objects.annotate(event_count=Count("events"))
    quiet_for_20_days = per_member.filter(last_active_at__lt=now - timedelta(days=20)).count()
    busy = per_member.filter(event_count__gte=100).count()

    # Drifting and silent members went quiet; loyal buyers and content lovers are busy.
    assert quiet_for_20_days >= 20
    assert busy >= 20


def test_the_same_seed_gives_the_same_data():
    _seed(members=60, seed=11)
    first = _snapshot()
    Member.objects.all().delete()

    _seed(members=60, seed=11)

    assert _snapshot() == first


def test_refuses_a_database_with_members_unless_told_to_skip():
    _seed(members=5, seed=1)

    with pytest.raises(CommandError):
        _seed(members=5, seed=1)
    assert "not seeded" in _seed(members=5, seed=1, if_empty=True)
    assert Member.objects.count() == 5


def test_the_full_demo_shows_loyalty_layers_and_operations_at_work():
    output = _seed(members=150, seed=5, behaviour_only=False)

    assert "The nightly jobs ran once" in output
    # Points earned through the brand's earn rules, the cache equal to the ledger, some spent on rewards.
    assert PointsEntry.objects.filter(kind="earn").exists()
    assert points_reconcile() == []
    assert RewardRedemption.objects.exists()
    assert not PointsAccount.objects.filter(balance__lt=0).exists()
    # Every member classified by the full layer run; lapsed buyers hold a recall coupon.
    assert MemberScore.objects.count() == 150
    assert Coupon.objects.exists()
    # The moderation queue has posts waiting and approved ones; the poll is open with votes.
    statuses = set(Submission.objects.values_list("status", flat=True))
    assert {SubmissionStatus.PENDING, SubmissionStatus.APPROVED} <= statuses
    poll = Poll.objects.get()
    assert poll.status == PollStatus.OPEN and poll.votes.exists()
    # The crisis ticket's members are those still in the group it names.
    ticket = Ticket.objects.get()
    assert TicketMember.objects.filter(ticket=ticket).exists()
