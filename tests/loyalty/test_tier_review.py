from datetime import timedelta
from decimal import Decimal

import pytest

from loyalty.models import MemberTier, Tier, TierChange, TierDowngradeNotice
from loyalty.services import tier_assign, tier_review
from members.models import EventKind
from tests.factories import MemberEventFactory, MemberFactory

pytestmark = pytest.mark.django_db


def tier(code: str) -> Tier:
    return Tier.objects.get(code=code)


def at_review(member, code: str, now):
    tier_assign(member=member, tier=tier(code), reason="test", now=now - timedelta(days=400))
    MemberTier.objects.filter(member=member).update(valid_until=now - timedelta(minutes=1))


def spend(member, amount: str, when):
    MemberEventFactory(member=member, kind=EventKind.PURCHASE, amount=Decimal(amount), occurred_at=when)


def code_of(member) -> str:
    return MemberTier.objects.select_related("tier").get(member=member).tier.code


def test_a_member_who_still_qualifies_keeps_the_tier_for_another_period(member, now):
    at_review(member, "gold", now)
    spend(member, "2100", now - timedelta(days=20))

    assert tier_review(now=now) == {"renewed": 1, "warned": 0, "downgraded": 0}

    status = MemberTier.objects.get(member=member)
    assert (status.tier.code, status.valid_until) == ("gold", now + timedelta(days=365))


def test_a_member_below_the_tier_is_warned_first_and_drops_only_after_the_grace_period(member, now):
    at_review(member, "gold", now)
    spend(member, "600", now - timedelta(days=20))  # reaches Silver only

    assert tier_review(now=now)["warned"] == 1
    notice = TierDowngradeNotice.objects.get(member=member)
    assert notice.to_tier.code == "silver" and "白银" in notice.message
    assert notice.downgrade_on == now + timedelta(days=30)
    assert code_of(member) == "gold"

    # Reviewing again inside the grace period changes nothing, and warns once.
    assert tier_review(now=now + timedelta(days=10)) == {"renewed": 0, "warned": 0, "downgraded": 0}

    assert tier_review(now=now + timedelta(days=31))["downgraded"] == 1
    assert code_of(member) == "silver"
    change = TierChange.objects.filter(member=member).latest("id")
    assert (change.from_tier.code, change.to_tier.code) == ("gold", "silver")
    notice.refresh_from_db()
    assert notice.outcome == TierDowngradeNotice.Outcome.DOWNGRADED
    # Not due again until the new tier's review date.
    assert tier_review(now=now + timedelta(days=32)) == {"renewed": 0, "warned": 0, "downgraded": 0}


def test_qualifying_again_during_the_grace_period_cancels_the_drop(member, now):
    at_review(member, "silver", now)
    tier_review(now=now)
    spend(member, "800", now + timedelta(days=5))

    assert tier_review(now=now + timedelta(days=31))["renewed"] == 1

    assert code_of(member) == "silver"
    assert TierDowngradeNotice.objects.get(member=member).outcome == TierDowngradeNotice.Outcome.KEPT


def test_members_not_yet_at_their_review_date_are_left_alone(now):
    member = MemberFactory()
    tier_assign(member=member, tier=tier("gold"), reason="test", now=now)

    assert tier_review(now=now + timedelta(days=10)) == {"renewed": 0, "warned": 0, "downgraded": 0}


def test_the_review_task_runs_the_service():
    from loyalty.tasks import review_tiers

    assert review_tiers.apply().get() == 0


def test_notices_and_the_grace_period_show_in_the_admin(client, supervisor, member, now):
    at_review(member, "gold", now)
    tier_review(now=now)
    client.force_login(supervisor)

    assert client.get("/admin/loyalty/tierdowngradenotice/").status_code == 200
    response = client.get("/admin/loyalty/loyaltysettings/1/change/")
    assert response.status_code == 200 and b"tier_grace_days" in response.content
