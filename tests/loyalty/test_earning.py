from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from loyalty.models import EarnRule, EarnRuleKind, EntryKind, PointsAccount, PointsEntry, PointsMultiplierWindow, Tier
from loyalty.services import points_earn_backfill, points_earn_for_events, tier_assign
from members.models import EventKind
from members.services.events import EventInput, events_ingest
from tests.factories import MemberEventFactory, MemberFactory
from tests.factories.loyalty import RedeemFactory
from tests.loyalty.conftest import SHANGHAI
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def rule(kind, points, **fields):
    return EarnRule.objects.create(
        name=f"{kind} {fields.get('sub_kind', '')}".strip(), kind=kind, points=points, **fields
    )


def event(member, kind=EventKind.PURCHASE, amount=None, when=None, **fields):
    if amount is None and kind == EventKind.PURCHASE:
        amount = Decimal("100.00")
    return MemberEventFactory(member=member, kind=kind, amount=amount, occurred_at=when or timezone.now(), **fields)


def earn(*events):
    return points_earn_for_events(event_ids=[e.pk for e in events])


def earned(member) -> list[int]:
    return list(
        PointsEntry.objects.filter(member=member, kind=EntryKind.EARN).order_by("id").values_list("amount", flat=True)
    )


def balance(member) -> int:
    return PointsAccount.objects.get(member=member).balance


def test_a_purchase_earns_points_per_yuan_rounded_down(member):
    rule(EarnRuleKind.PURCHASE, 2)
    purchase = event(member, amount=Decimal("88.60"))

    result = earn(purchase)

    entry = PointsEntry.objects.get(member=member)
    assert (entry.amount, entry.remaining, entry.kind) == (177, 177, EntryKind.EARN)
    assert (entry.idempotency_key, entry.source_event_id) == (f"earn:{purchase.pk}", purchase.pk)
    assert entry.expires_at is not None and entry.expires_at > timezone.now()
    assert (result.entries, result.points, result.member_ids) == (1, 177, {member.pk})
    assert balance(member) == 177
    assert_ledger_consistent(member.pk)


def test_earning_the_same_events_again_changes_nothing(member):
    rule(EarnRuleKind.PURCHASE, 1)
    rule(EarnRuleKind.INTERACTION, 5, daily_cap=8)
    events = [
        event(member),
        event(member, kind=EventKind.INTERACTION, sub_kind="like"),
        event(member, kind=EventKind.INTERACTION, sub_kind="share"),
    ]
    earn(*events)

    again = earn(*events)

    assert (again.entries, again.points) == (0, 0)
    assert earned(member) == [100, 5, 3]
    assert balance(member) == 108
    assert_ledger_consistent(member.pk)


def test_events_without_an_active_rule_earn_nothing(member):
    rule(EarnRuleKind.PURCHASE, 1, is_active=False)
    rule(EarnRuleKind.INTERACTION, 1, sub_kind="share")

    earn(
        event(member),
        event(member, kind=EventKind.INTERACTION, sub_kind="like"),
        event(member, kind=EventKind.COMPLAINT),
    )

    assert earned(member) == []


def test_a_sub_kind_rule_wins_over_the_rule_for_any_sub_kind(member):
    rule(EarnRuleKind.INTERACTION, 1)
    rule(EarnRuleKind.INTERACTION, 10, sub_kind="share")
    rule(EarnRuleKind.UGC, 20, sub_kind="approved")

    earn(
        event(member, kind=EventKind.INTERACTION, sub_kind="like"),
        event(member, kind=EventKind.INTERACTION, sub_kind="share"),
        event(member, kind=EventKind.UGC, sub_kind=""),
        event(member, kind=EventKind.UGC, sub_kind="approved"),
    )

    assert earned(member) == [1, 10, 20]


def test_the_tier_multiplier_applies(member):
    rule(EarnRuleKind.PURCHASE, 1)
    tier_assign(member=member, tier=Tier.objects.get(code="gold"), reason="test")  # 1.5×
    other = MemberFactory()  # no tier yet: the lowest tier's multiplier, 1×

    earn(event(member, amount=Decimal("101")), event(other, amount=Decimal("101")))

    assert earned(member) == [151]
    assert earned(other) == [101]


def test_a_double_points_window_applies_to_events_inside_it_and_the_largest_factor_wins(member):
    rule(EarnRuleKind.INVITE, 10)
    start = timezone.now() - timedelta(days=2)
    PointsMultiplierWindow.objects.create(name="双倍", starts_at=start, ends_at=start + timedelta(days=1))
    PointsMultiplierWindow.objects.create(
        name="三倍", starts_at=start, ends_at=start + timedelta(hours=1), factor=Decimal(3)
    )
    PointsMultiplierWindow.objects.create(
        name="off", starts_at=start, ends_at=start + timedelta(days=1), factor=Decimal(5), is_active=False
    )

    earn(
        event(member, kind=EventKind.INVITE, when=start + timedelta(minutes=30)),
        event(member, kind=EventKind.INVITE, when=start + timedelta(hours=5)),
        event(member, kind=EventKind.INVITE, when=start + timedelta(days=1)),
    )

    assert earned(member) == [30, 20, 10]


def test_the_daily_cap_counts_what_the_rule_already_paid_that_local_day(member):
    rule(EarnRuleKind.INTERACTION, 4, daily_cap=10)
    day = timezone.now().astimezone(SHANGHAI).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
    first = [
        event(member, kind=EventKind.INTERACTION, sub_kind="like", when=day + timedelta(minutes=i)) for i in range(2)
    ]
    earn(*first)
    later = [
        event(member, kind=EventKind.INTERACTION, sub_kind="view", when=day + timedelta(hours=h)) for h in (1, 2, 3)
    ]
    # 23:30 in Shanghai is still the same local day; 00:30 the next day starts a new cap.
    late = event(member, kind=EventKind.INTERACTION, sub_kind="view", when=day.replace(hour=23, minute=30))
    next_day = event(member, kind=EventKind.INTERACTION, sub_kind="view", when=day + timedelta(hours=15, minutes=30))

    earn(*later, late, next_day)

    assert earned(member) == [4, 4, 2, 4]
    assert balance(member) == 14


def test_check_in_streaks_earn_their_bonus_every_n_consecutive_days(member):
    rule(EarnRuleKind.CHECK_IN, 5, daily_cap=5, streak_days=3, streak_bonus=20)
    start = datetime(2026, 3, 1, 8, 0, tzinfo=SHANGHAI)
    days = [0, 1, 2, 3, 4, 5, 7, 8, 9]
    check_ins = [event(member, kind=EventKind.CHECK_IN, when=start + timedelta(days=d)) for d in days]
    # A second check-in on day 2 earns nothing: the cap is one check-in's points.
    check_ins.append(event(member, kind=EventKind.CHECK_IN, when=start + timedelta(days=2, hours=3)))

    points_earn_for_events(event_ids=[e.pk for e in check_ins], now=start + timedelta(days=10))

    by_event = dict(PointsEntry.objects.filter(member=member).values_list("source_event_id", "amount"))
    assert [by_event.get(e.pk, 0) for e in check_ins] == [5, 5, 25, 5, 5, 25, 5, 5, 25, 0]


def test_a_check_in_earned_later_still_sees_the_streak(member):
    rule(EarnRuleKind.CHECK_IN, 1, daily_cap=1, streak_days=2, streak_bonus=10)
    start = datetime(2026, 3, 1, 8, 0, tzinfo=SHANGHAI)
    earn(event(member, kind=EventKind.CHECK_IN, when=start))

    second = event(member, kind=EventKind.CHECK_IN, when=start + timedelta(days=1))
    points_earn_for_events(event_ids=[second.pk], now=start + timedelta(days=2))

    assert earned(member) == [1, 11]


def test_points_of_old_events_expire_by_the_policy_counted_from_the_event(member):
    rule(EarnRuleKind.PURCHASE, 1)
    when = datetime(2026, 3, 15, 12, 0, tzinfo=SHANGHAI)
    too_old = event(member, when=datetime(2024, 1, 10, 12, 0, tzinfo=SHANGHAI))

    points_earn_for_events(event_ids=[event(member, when=when).pk, too_old.pk], now=when + timedelta(days=1))

    entry = PointsEntry.objects.get(member=member)
    # End of the 12th month after March 2026: valid until 31 March 2027.
    assert entry.expires_at == datetime(2027, 4, 1, tzinfo=SHANGHAI)


def test_a_full_refund_reverses_the_points_its_purchase_earned(member):
    rule(EarnRuleKind.PURCHASE, 1)
    purchase = event(member, amount=Decimal("80"), external_id="order-1")
    earn(purchase)
    refund = event(member, kind=EventKind.REFUND, amount=Decimal("80"), payload={"order_id": "order-1"})

    result = earn(refund)
    earn(refund)

    reversal = PointsEntry.objects.get(kind=EntryKind.REVERSE)
    assert (reversal.amount, reversal.reverses.source_event_id) == (-80, purchase.pk)
    assert reversal.idempotency_key == f"refund:{refund.pk}"
    assert result.refunds == 1
    assert balance(member) == 0
    assert_ledger_consistent(member.pk)


def test_partial_refunds_take_back_their_share_and_never_more_than_was_earned(member):
    rule(EarnRuleKind.PURCHASE, 1)
    purchase = event(member, amount=Decimal("100"), payload={"order_no": "SO1"})
    earn(purchase)
    first = event(member, kind=EventKind.REFUND, amount=Decimal("30"), payload={"order_no": "SO1"})
    earn(first)
    rest = event(member, kind=EventKind.REFUND, amount=Decimal("100"), payload={"order_no": "SO1"})
    earn(rest)

    assert list(PointsEntry.objects.filter(kind=EntryKind.ADJUST).values_list("amount", flat=True)) == [-30, -70]
    assert balance(member) == 0
    assert_ledger_consistent(member.pk)


def test_a_refund_takes_back_only_what_the_balance_still_holds(member):
    rule(EarnRuleKind.PURCHASE, 1)
    earn(event(member, amount=Decimal("100"), external_id="order-2"))
    RedeemFactory(member=member, amount=90)

    earn(event(member, kind=EventKind.REFUND, amount=Decimal("50"), payload={"order_id": "order-2"}))

    assert balance(member) == 0
    assert_ledger_consistent(member.pk)


def test_a_refund_of_an_unknown_order_takes_nothing(member):
    rule(EarnRuleKind.PURCHASE, 1)
    earn(event(member, external_id="order-3"))

    result = earn(
        event(member, kind=EventKind.REFUND, amount=Decimal("10"), payload={"order_id": "nope"}),
        event(member, kind=EventKind.REFUND, amount=Decimal("10")),
    )

    assert result.refunds == 0
    assert balance(member) == 100


def test_a_refund_recorded_before_its_purchase_takes_nothing_back_whenever_it_is_processed(member):
    rule(EarnRuleKind.PURCHASE, 1)
    early_refund = event(member, kind=EventKind.REFUND, amount=Decimal("80"), payload={"order_id": "order-9"})
    purchase = event(member, amount=Decimal("80"), external_id="order-9")

    result = points_earn_backfill()
    earn(early_refund, purchase)

    assert (result.entries, result.refunds) == (1, 0)
    assert balance(member) == 80
    assert_ledger_consistent(member.pk)


def test_the_backfill_earns_every_event_by_ranges_of_members_once(member):
    rule(EarnRuleKind.PURCHASE, 1)
    others = MemberFactory.create_batch(3)
    counts = {member: 2, others[0]: 3, others[1]: 4, others[2]: 4}
    for round_ in range(4):  # interleaved, as events arrive: every range of event ids touches every member
        for someone, count in counts.items():
            if round_ < count:
                event(someone, amount=Decimal("10"))

    result = points_earn_backfill(batch_size=3)
    again = points_earn_backfill(batch_size=3)

    assert (result.entries, result.points) == (13, 130)
    assert again.entries == 0
    assert sorted(PointsAccount.objects.values_list("balance", flat=True)) == [20, 30, 40, 40]
    for someone in [member, *others]:
        assert_ledger_consistent(someone.pk)


def test_a_backfill_stopped_halfway_finishes_the_rest_when_run_again(member):
    rule(EarnRuleKind.PURCHASE, 1)
    rule(EarnRuleKind.CHECK_IN, 5, daily_cap=5)
    other = MemberFactory()
    events = [event(someone, amount=Decimal("10")) for someone in (member, other, member, other)]
    event(member, kind=EventKind.CHECK_IN)
    event(member, kind=EventKind.CHECK_IN)

    first = points_earn_backfill(last_id=events[1].pk)  # as if killed after the events up to here
    rest = points_earn_backfill()

    assert (first.entries, rest.entries) == (2, 3)  # the second check-in of the day is over the cap
    assert (balance(member), balance(other)) == (25, 20)
    assert_ledger_consistent(member.pk)
    assert_ledger_consistent(other.pk)


def test_ingest_sends_the_new_event_ids_after_commit_and_loyalty_enqueues_their_earning(
    member, django_capture_on_commit_callbacks
):
    now = timezone.now()
    events = [
        EventInput(
            member_id=member.pk,
            kind=EventKind.PURCHASE,
            occurred_at=now,
            source="shop",
            external_id=f"o-{i}",
            amount=Decimal("10"),
        )
        for i in range(3)
    ]
    with mock.patch("loyalty.tasks.earn_points_for_events.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            events_ingest(events=events)
        with django_capture_on_commit_callbacks(execute=True):
            events_ingest(events=events)  # replays: nothing new, nothing sent

    assert delay.call_count == 1
    (ids,), _ = delay.call_args
    assert sorted(ids) == sorted(member.events.values_list("id", flat=True))


def test_the_earn_task_earns_and_moves_the_member_up_a_tier(member):
    from loyalty.tasks import earn_points_for_events

    rule(EarnRuleKind.PURCHASE, 1)
    purchase = event(member, amount=Decimal("600"))

    assert earn_points_for_events.apply(args=[[purchase.pk]]).get() == 1
    assert earn_points_for_events.apply(args=[[purchase.pk]]).get() == 0

    assert balance(member) == 600
    assert member.tier_status.tier.code == "silver"


def test_the_backfill_command_earns_and_upgrades_tiers(member):
    from io import StringIO

    from django.core.management import call_command

    rule(EarnRuleKind.PURCHASE, 1)
    event(member, amount=Decimal("2500"))
    out = StringIO()

    call_command("earn_points_backfill", "--batch-size", "10", stdout=out)

    assert out.getvalue().startswith("1 entries, 2500 points, 0 refunds, 1 tier upgrades (run #")
    assert member.tier_status.tier.code == "gold"


def test_staff_edit_earn_rules_and_windows_in_the_admin(client, supervisor):
    client.force_login(supervisor)
    response = client.post(
        "/admin/loyalty/earnrule/add/",
        {
            "name": "每日签到",
            "kind": "check_in",
            "sub_kind": "",
            "points": "5",
            "is_active": "on",
            "daily_cap": "5",
            "streak_days": "7",
            "streak_bonus": "50",
        },
    )
    assert response.status_code == 302, response.content
    assert EarnRule.objects.get(kind="check_in").streak_bonus == 50
    assert client.get("/admin/loyalty/earnrule/").status_code == 200
    response = client.post(
        "/admin/loyalty/pointsmultiplierwindow/add/",
        {
            "name": "双11",
            "starts_at_0": "2026-11-11",
            "starts_at_1": "00:00:00",
            "ends_at_0": "2026-11-12",
            "ends_at_1": "00:00:00",
            "factor": "2",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content
    assert client.get("/admin/loyalty/pointsmultiplierwindow/").status_code == 200
