from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from crm.core.exceptions import ApplicationError
from loyalty.models import Badge, BadgeKind, BadgeRule, MemberBadge
from loyalty.selectors import honor_roll, masked_name, member_badges_current
from loyalty.services import badge_award, badge_revoke, badges_award
from members.models import EventKind
from tests.factories import MemberEventFactory, MemberFactory
from tests.loyalty.conftest import SHANGHAI

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 31, 22, 0, tzinfo=SHANGHAI)


def badge(rule, threshold, **fields) -> Badge:
    return Badge.objects.create(
        code=f"{rule}-{threshold}", name=f"{rule} {threshold}", rule=rule, threshold=Decimal(threshold), **fields
    )


def events(member, kind, whens, **fields):
    for when in whens:
        MemberEventFactory(member=member, kind=kind, occurred_at=when, amount=fields.pop("amount", None), **fields)


def holders(b: Badge) -> set[int]:
    return set(MemberBadge.objects.filter(badge=b).values_list("member_id", flat=True))


def test_the_three_titles_and_the_streak_badges_are_installed():
    titles = set(Badge.objects.filter(kind=BadgeKind.TITLE).values_list("name", flat=True))
    assert titles == {"首席体验官", "活跃之星", "社群达人"}
    assert Badge.objects.get(code="check-in-21").rule == BadgeRule.CHECK_IN_STREAK


def test_a_check_in_streak_badge_goes_to_members_with_n_consecutive_local_days():
    Badge.objects.update(is_active=False)
    streak = badge(BadgeRule.CHECK_IN_STREAK, 3)
    steady, gappy, late_nights = MemberFactory(), MemberFactory(), MemberFactory()
    start = datetime(2026, 3, 1, 9, 0, tzinfo=SHANGHAI)
    events(steady, EventKind.CHECK_IN, [start + timedelta(days=d) for d in (0, 1, 2)])
    events(gappy, EventKind.CHECK_IN, [start + timedelta(days=d) for d in (0, 1, 3, 4)])
    # 23:30 and 00:30 Shanghai are two local days, though the same UTC day.
    events(
        late_nights, EventKind.CHECK_IN, [start.replace(hour=23, minute=30) + timedelta(hours=h) for h in (0, 1, 25)]
    )

    assert badges_award(now=NOW) == {streak.code: 2}
    assert holders(streak) == {steady.pk, late_nights.pk}


def test_running_the_award_job_twice_awards_once():
    Badge.objects.update(is_active=False)
    invites = badge(BadgeRule.INVITES, 2)
    member = MemberFactory()
    events(member, EventKind.INVITE, [NOW - timedelta(days=d) for d in (1, 2)])

    assert badges_award(now=NOW) == {invites.code: 1}
    events(member, EventKind.INVITE, [NOW - timedelta(hours=1)])
    assert badges_award(now=NOW) == {invites.code: 0}

    assert MemberBadge.objects.filter(badge=invites).count() == 1


def test_count_rules_respect_their_period_and_ugc_counts_only_approved_posts():
    Badge.objects.update(is_active=False)
    ugc = badge(BadgeRule.UGC_APPROVED, 2, period_days=30)
    total = badge(BadgeRule.CHECK_IN_TOTAL, 2)
    member, other = MemberFactory(), MemberFactory()
    events(member, EventKind.UGC, [NOW - timedelta(days=1), NOW - timedelta(days=2)], sub_kind="approved")
    events(other, EventKind.UGC, [NOW - timedelta(days=1), NOW - timedelta(days=40)], sub_kind="approved")
    events(other, EventKind.UGC, [NOW - timedelta(days=3)])
    # Two check-ins on one day are one day.
    events(other, EventKind.CHECK_IN, [NOW - timedelta(hours=3), NOW - timedelta(hours=2)])
    events(member, EventKind.CHECK_IN, [NOW - timedelta(days=100), NOW - timedelta(days=1)])

    badges_award(now=NOW)

    assert holders(ugc) == {member.pk}
    assert holders(total) == {member.pk}


def test_a_spend_badge_counts_purchases_net_of_refunds_over_the_period():
    Badge.objects.update(is_active=False)
    big = badge(BadgeRule.SPEND, 2000, period_days=365)
    spender, refunder = MemberFactory(), MemberFactory()
    events(spender, EventKind.PURCHASE, [NOW - timedelta(days=10)], amount=Decimal("2000.00"))
    events(refunder, EventKind.PURCHASE, [NOW - timedelta(days=10)], amount=Decimal("2500.00"))
    events(refunder, EventKind.REFUND, [NOW - timedelta(days=5)], amount=Decimal("600.00"))

    badges_award(now=NOW)

    assert holders(big) == {spender.pk}


def test_top_active_takes_the_most_active_share_of_all_members_and_lapses():
    Badge.objects.update(is_active=False)
    star = badge(BadgeRule.TOP_ACTIVE, 20, period_days=30, validity_days=30, kind=BadgeKind.TITLE)
    members = MemberFactory.create_batch(10)
    for count, member in enumerate(members):
        events(member, EventKind.INTERACTION, [NOW - timedelta(hours=h + 1) for h in range(count)], sub_kind="like")

    badges_award(now=NOW)

    assert holders(star) == {members[9].pk, members[8].pk}
    assert member_badges_current(now=NOW).filter(badge=star).count() == 2
    assert member_badges_current(now=NOW + timedelta(days=31)).filter(badge=star).count() == 0


def test_staff_award_by_hand_and_revoke_with_a_reason(supervisor, operator, member):
    officer = Badge.objects.get(code="chief-experience-officer")

    with pytest.raises(ApplicationError):
        badge_award(member=member, badge=officer, actor=operator, reason="新品测评")
    held = badge_award(member=member, badge=officer, actor=supervisor, reason="新品测评")
    assert badge_award(member=member, badge=officer, actor=supervisor, reason="again").pk == held.pk
    assert held.expires_at is not None and held.awarded_by == supervisor

    badge_revoke(member_badge=held, actor=supervisor, reason="违规")
    assert not member_badges_current().filter(pk=held.pk).exists()
    # Given again later: the same row, current again.
    again = badge_award(member=member, badge=officer, actor=supervisor, reason="恢复")
    assert again.pk == held.pk and again.revoked_at is None
    assert member_badges_current().filter(pk=held.pk).exists()


def test_the_award_task_runs_the_job():
    from loyalty.tasks import award_badges

    assert award_badges.apply().get() == 0


# Honor roll --------------------------------------------------------------------------------


def test_names_on_the_public_roll_are_masked():
    assert [masked_name(n) for n in ("张三丰", "李", "")] == ["张**", "李*", "*"]


def test_the_honor_roll_lists_current_holders_with_masked_names_and_no_phones(client, supervisor):
    officer = Badge.objects.get(code="chief-experience-officer")
    holder = MemberFactory(name="王小明", phone="+8613912345678")
    revoked = MemberFactory(name="赵大海")
    badge_award(member=holder, badge=officer, actor=supervisor, reason="测评")
    badge_revoke(
        member_badge=badge_award(member=revoked, badge=officer, actor=supervisor, reason="x"),
        actor=supervisor,
        reason="y",
    )
    Badge.objects.create(code="hidden", name="内部徽章", is_public=False)

    response = client.get("/honors/")

    text = response.content.decode()
    assert response.status_code == 200
    assert "首席体验官" in text and "王**" in text
    assert "王小明" not in text and "赵" not in text and "13912345678" not in text and "内部徽章" not in text
    assert [entry.badge.kind for entry in honor_roll()][0] == BadgeKind.TITLE


def test_staff_award_from_the_badge_page_and_revoke_from_the_holders_list(client, supervisor):
    member = MemberFactory(external_id="M7")
    officer = Badge.objects.get(code="chief-experience-officer")
    client.force_login(supervisor)
    url = f"/admin/loyalty/badge/{officer.pk}/award/"
    assert client.get(url).status_code == 200

    client.post(url, {"token": "b" * 32, "member_numbers": "M7 M404", "reason": "测评"})
    held = MemberBadge.objects.get(member=member, badge=officer)
    client.post(
        "/admin/loyalty/memberbadge/",
        {"action": "revoke", "_selected_action": [held.pk], "apply": "1", "token": "c" * 32, "reason": "违规"},
    )

    held.refresh_from_db()
    assert held.revoked_reason == "违规" and held.revoked_by == supervisor
    assert client.get(f"/admin/loyalty/badge/{officer.pk}/change/").status_code == 200
    assert client.get("/admin/loyalty/memberbadge/").status_code == 200
