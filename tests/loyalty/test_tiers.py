from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import AppendOnlyError, MemberTier, Tier, TierChange, TierRule
from loyalty.selectors import member_qualifying_totals, tier_progress
from loyalty.services import points_reverse, tier_assign, tier_upgrade_if_qualified
from members.models import EventKind
from tests.factories import MemberEventFactory
from tests.factories.loyalty import EarnFactory

pytestmark = pytest.mark.django_db


def tier(code: str) -> Tier:
    return Tier.objects.get(code=code)


def spend(member, amount, when, kind=EventKind.PURCHASE):
    MemberEventFactory(member=member, kind=kind, amount=Decimal(amount), occurred_at=when)


def test_the_four_default_tiers_are_installed_in_rank_order():
    assert list(Tier.objects.values_list("code", "name", "min_spend")) == [
        ("bronze", "青铜", Decimal("0.00")),
        ("silver", "白银", Decimal("500.00")),
        ("gold", "黄金", Decimal("2000.00")),
        ("diamond", "钻石", Decimal("5000.00")),
    ]


def test_qualifying_spend_counts_purchases_minus_refunds_inside_the_window(member, now):
    spend(member, "300", now - timedelta(days=10))
    spend(member, "200", now - timedelta(days=364))
    spend(member, "50", now - timedelta(days=5), kind=EventKind.REFUND)
    spend(member, "999", now - timedelta(days=366))
    spend(member, "999", now + timedelta(days=1))

    assert member_qualifying_totals(member=member, days=365, now=now)[0] == Decimal("450.00")


def test_qualifying_points_count_earns_net_of_their_reversals(member):
    EarnFactory(member=member, amount=300)
    refunded = EarnFactory(member=member, amount=100)
    points_reverse(entry=refunded, reason="refund", idempotency_key="refund")

    assert member_qualifying_totals(member=member, days=365)[1] == 300


def test_progress_tells_how_much_more_to_spend_for_the_next_tier(member, now):
    spend(member, "420", now - timedelta(days=30))

    progress = tier_progress(member=member, now=now)

    assert (progress.current.code, progress.next.code, progress.spend_needed) == ("bronze", "silver", Decimal("80"))
    assert progress.message == "Spend 80 more yuan to reach 白银."


@pytest.mark.parametrize(
    ("rule", "spent", "earned", "message"),
    [
        (TierRule.POINTS, "0", 700, "Earn 300 more points to reach 白银."),
        (TierRule.EITHER, "420", 700, "Spend 80 more yuan or earn 300 more points to reach 白银."),
        (TierRule.EITHER, "520", 700, "Qualifies for 白银."),
        (TierRule.BOTH, "420", 700, "Spend 80 more yuan and earn 300 more points to reach 白银."),
        (TierRule.BOTH, "520", 700, "Earn 300 more points to reach 白银."),
        (TierRule.BOTH, "420.50", 1000, "Spend 79.50 more yuan to reach 白银."),
    ],
)
def test_progress_follows_the_next_tiers_rule(member, rule, spent, earned, message):
    Tier.objects.filter(code="silver").update(rule=rule, min_points=1000)
    spend(member, spent, timezone.now() - timedelta(days=1))
    EarnFactory(member=member, amount=earned)

    # Points count by when they were recorded, so this asks about the present.
    assert tier_progress(member=member).message == message


def test_top_tier_has_nothing_further(member, now):
    tier_assign(member=member, tier=tier("diamond"), reason="VIP", now=now)

    progress = tier_progress(member=member, now=now)

    assert (progress.current.code, progress.next, progress.message) == ("diamond", None, "Top tier reached.")


def test_a_member_is_upgraded_straight_to_the_highest_tier_reached(member, now):
    spend(member, "2100", now - timedelta(days=3))

    change = tier_upgrade_if_qualified(member=member, now=now)

    assert (change.from_tier, change.to_tier.code) == (None, "gold")
    assert "2100" in change.reason
    status = MemberTier.objects.get(member=member)
    assert (status.tier.code, status.since, status.valid_until) == ("gold", now, now + timedelta(days=365))


def test_upgrades_never_go_down_and_repeat_checks_record_nothing(member, now):
    tier_assign(member=member, tier=tier("gold"), reason="campaign", now=now)
    spend(member, "600", now - timedelta(days=3))

    assert tier_upgrade_if_qualified(member=member, now=now) is None
    assert tier_upgrade_if_qualified(member=member, now=now) is None
    assert MemberTier.objects.get(member=member).tier.code == "gold"
    assert TierChange.objects.filter(member=member).count() == 1


def test_every_change_is_kept_with_its_reason_and_actor(member, now, supervisor):
    tier_assign(member=member, tier=tier("silver"), reason="opening", now=now)
    tier_assign(member=member, tier=tier("silver"), reason="no change", now=now)
    tier_assign(member=member, tier=tier("bronze"), reason="complaint upheld", actor=supervisor, now=now)

    history = list(TierChange.objects.filter(member=member).order_by("id"))
    assert [(c.from_tier_id and c.from_tier.code, c.to_tier.code, c.reason, c.actor) for c in history] == [
        (None, "silver", "opening", None),
        ("silver", "bronze", "complaint upheld", supervisor),
    ]
    history[0].reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        history[0].save()


def test_supervisors_edit_tiers_and_operators_only_see_them(client, supervisor, operator):
    silver = tier("silver")
    change = reverse("admin:loyalty_tier_change", args=[silver.pk])
    form = {
        "name": "银卡",
        "code": "silver",
        "rank": 2,
        "rule": TierRule.SPEND,
        "min_spend": "400",
        "min_points": 0,
        "qualifying_period_days": 365,
        "validity_days": 365,
        "discount_percent": "10",
        "points_multiplier": "1.5",
        "birthday_gift": "",
        "benefits": "",
    }

    client.force_login(operator)
    assert client.get(change).status_code == 200
    client.post(change, form)
    assert tier("silver").name == "白银"

    client.force_login(supervisor)
    assert client.post(change, {**form, "discount_percent": "120"}).status_code == 200  # refused: over 100%
    assert client.post(change, form).status_code == 302
    assert (tier("silver").name, tier("silver").min_spend) == ("银卡", Decimal("400.00"))


def test_a_member_tier_page_shows_progress_and_history(client, auditor, member, now):
    tier_assign(member=member, tier=tier("silver"), reason="opening offer")
    status = MemberTier.objects.get(member=member)
    client.force_login(auditor)

    page = client.get(reverse("admin:loyalty_membertier_change", args=[status.pk]))

    assert page.status_code == 200
    assert "Spend 2000 more yuan to reach 黄金." in page.text
    assert "opening offer" in page.text


def test_upgrades_for_many_members_take_a_fixed_number_of_queries(now, django_assert_max_num_queries):
    from loyalty.services import tiers_upgrade_if_qualified
    from tests.factories import MemberFactory

    members = MemberFactory.create_batch(30)
    gold, silver, stays, newcomer = members[:10], members[10:20], members[20:29], members[29]
    for member in gold:
        spend(member, "2500", now - timedelta(days=2))
    for member in silver:
        tier_assign(member=member, tier=tier("bronze"), reason="opening", now=now - timedelta(days=30))
        spend(member, "600", now - timedelta(days=2))
    for member in stays:
        tier_assign(member=member, tier=tier("gold"), reason="campaign", now=now - timedelta(days=30))
        spend(member, "600", now - timedelta(days=2))

    # Locks, two totals, the first-tier insert, the bulk update and the history: not per member.
    with django_assert_max_num_queries(10):
        moved = tiers_upgrade_if_qualified(member_ids=[m.pk for m in members], now=now)

    assert moved == 10 + 10 + 1
    codes = dict(MemberTier.objects.values_list("member_id", "tier__code"))
    assert {codes[m.pk] for m in gold} == {"gold"}
    assert {codes[m.pk] for m in silver} == {"silver"}
    assert {codes[m.pk] for m in stays} == {"gold"}  # never down
    assert codes[newcomer.pk] == "bronze"
    change = TierChange.objects.get(member=silver[0], to_tier__code="silver")
    assert (change.from_tier.code, "600" in change.reason) == ("bronze", True)
    assert tiers_upgrade_if_qualified(member_ids=[m.pk for m in members], now=now) == 0
