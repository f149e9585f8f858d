"""Loyalty on the member admin: the member page's loyalty panel and the bulk grant/issue actions."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import (
    Badge,
    Coupon,
    CouponBatch,
    EntryKind,
    LoyaltyJob,
    LoyaltyJobMember,
    LoyaltyJobRun,
    PointsAccount,
    PointsEntry,
    Tier,
)
from loyalty.services import badge_award, tier_assign
from loyalty.tasks import run_member_list_grant
from members.models import EventKind, Member
from tests.factories import MemberEventFactory, MemberFactory
from tests.factories.loyalty import EarnFactory, RedeemFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:members_member_changelist")
TOKEN = "a" * 32


def member_page(client, member):
    return client.get(reverse("admin:members_member_change", args=[member.pk]))


# The member page ---------------------------------------------------------------------------


def test_the_member_page_shows_balance_tier_progress_badges_lots_and_entries(client, supervisor, member):
    client.force_login(supervisor)
    soon = timezone.now() + timedelta(days=10)
    lot = EarnFactory(member=member, amount=300, expires_at=soon, reason="welcome gift")
    EarnFactory(member=member, amount=50)
    redemption = RedeemFactory(member=member, amount=120)
    MemberEventFactory(member=member, kind=EventKind.PURCHASE, amount=Decimal("420"), occurred_at=timezone.now())
    tier_assign(member=member, tier=Tier.objects.get(code="bronze"), reason="joined")
    badge_award(
        member=member, badge=Badge.objects.get(code="chief-experience-officer"), actor=supervisor, reason="trial lead"
    )

    page = member_page(client, member)

    assert page.status_code == 200
    text = page.text
    assert '<dd class="points-balance">230</dd>' in text
    # 300 - 120 spent from the soonest-expiring lot: 180 expire within 30 days.
    assert '<dd class="points-expiring">180</dd>' in text
    assert '<dd class="tier-name">青铜</dd>' in text
    assert "Spend 80 more yuan to reach 白银." in text
    assert "首席体验官" in text
    assert "welcome gift" in text
    assert reverse("admin:loyalty_pointsentry_change", args=[redemption.pk]) in text
    assert reverse("admin:loyalty_pointsentry_change", args=[lot.pk]) in text
    assert reverse("admin:loyalty_pointsentry_adjust") + f"?member={member.pk}" in text
    assert reverse("admin:loyalty_pointsentry_changelist") + f"?member__id__exact={member.pk}" in text


def test_the_member_page_in_chinese_says_how_far_the_next_tier_is(client, supervisor, member):
    client.force_login(supervisor)
    MemberEventFactory(member=member, kind=EventKind.PURCHASE, amount=Decimal("420"), occurred_at=timezone.now())

    page = client.get(reverse("admin:members_member_change", args=[member.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert "再消费 80 元升级白银" in page.text


def test_a_member_without_points_or_tier_shows_the_lowest_tier_and_no_lots(client, operator, member):
    client.force_login(operator)

    page = member_page(client, member)

    assert page.status_code == 200
    assert '<dd class="points-balance">0</dd>' in page.text
    assert "No points to spend." in page.text
    assert "Spend 500 more yuan to reach 白银." in page.text
    # Operators may not adjust points: no link to the adjustment page.
    assert reverse("admin:loyalty_pointsentry_adjust") not in page.text


def test_the_member_page_takes_the_same_number_of_queries_however_long_the_history(
    client, supervisor, django_assert_num_queries
):
    client.force_login(supervisor)
    short, long = MemberFactory(), MemberFactory()
    EarnFactory(member=short, amount=10)
    for _ in range(40):
        EarnFactory(member=long, amount=10)
        RedeemFactory(member=long, amount=5)
    for index in range(25):
        MemberEventFactory(
            member=long, kind=EventKind.PURCHASE, amount=Decimal(10), occurred_at=timezone.now() - timedelta(days=index)
        )

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert member_page(client, short).status_code == 200
    with CaptureQueriesContext(connection) as many:
        page = member_page(client, long)
    assert page.status_code == 200
    assert len(many) == len(few)
    # Ten lots and ten entries are shown, with a link to the rest.
    assert "All open lots" in page.text
    assert page.text.count('class="points-amount"') == 10


# Bulk actions from the member list ---------------------------------------------------------


def action(client, name, members, *, apply=None, select_across=False, query=""):
    data = {
        "action": name,
        "index": 0,
        "select_across": "1" if select_across else "0",
        "_selected_action": [m.pk for m in members],
    }
    if apply is not None:
        data.update(apply, apply="yes")
    return client.post(CHANGELIST + query, data)


def carry_out_grants() -> None:
    """What the worker does with the queued grants (the task, run in this process)."""
    for run in LoyaltyJobRun.objects.filter(key__isnull=False, status=LoyaltyJobRun.Status.RUNNING):
        run_member_list_grant.apply(args=[run.pk]).get()


def test_a_supervisor_gives_points_to_the_selected_members_after_confirming_once(client, supervisor):
    client.force_login(supervisor)
    chosen, other = MemberFactory.create_batch(3), MemberFactory()

    confirm = action(client, "grant_points", chosen)
    assert confirm.status_code == 200
    assert "3 members selected." in confirm.text
    assert not PointsEntry.objects.exists()

    form = {"amount": 200, "reason": "store opening gift", "token": TOKEN}
    done = action(client, "grant_points", chosen, apply=form)
    again = action(client, "grant_points", chosen, apply=form)  # a double click

    assert done.status_code == again.status_code == 302
    # Recorded once, with the list as confirmed, and left to the worker: nothing given in the request.
    run = LoyaltyJobRun.objects.get()
    assert (run.job, run.status, run.member_count, run.requested_by, run.key) == (
        LoyaltyJob.GRANT_POINTS,
        LoyaltyJobRun.Status.RUNNING,
        3,
        supervisor,
        TOKEN,
    )
    assert not PointsEntry.objects.exists()
    page = client.get(done.url, follow=True)
    progress_url = reverse("admin:loyalty_loyaltyjobrun_change", args=[run.pk])
    assert "200 points are being given to each of 3 members." in page.text and progress_url in page.text
    running = client.get(progress_url).text
    assert 'http-equiv="refresh"' in running and '<progress value="0" max="100">' in running

    carry_out_grants()
    run_member_list_grant.apply(args=[run.pk]).get()  # a redelivered task gives nothing twice

    run.refresh_from_db()
    assert (run.status, run.progress, run.rows) == (LoyaltyJobRun.Status.SUCCEEDED, 100, 3)
    assert not LoyaltyJobMember.objects.exists()
    done_page = client.get(progress_url).text
    assert '<progress value="100" max="100">' in done_page and 'http-equiv="refresh"' not in done_page
    entries = PointsEntry.objects.order_by("member_id")
    assert [(e.member_id, e.kind, e.amount, e.reason, e.actor) for e in entries] == [
        (m.pk, EntryKind.ADJUST, 200, "store opening gift", supervisor) for m in chosen
    ]
    assert not PointsAccount.objects.filter(member=other).exists()
    for member in chosen:
        assert_ledger_consistent(member.pk)


def test_points_go_to_the_whole_filtered_list_when_all_are_selected(client, supervisor):
    client.force_login(supervisor)
    in_city = MemberFactory.create_batch(4, city="苏州")
    MemberFactory.create_batch(2, city="南京")

    confirm = action(client, "grant_points", in_city[:1], select_across=True, query="?city=苏州")
    assert "All 4 members that match the current filters." in confirm.text
    action(
        client,
        "grant_points",
        in_city[:1],
        select_across=True,
        query="?city=苏州",
        apply={"amount": 50, "reason": "city event", "token": TOKEN},
    )
    MemberFactory(city="苏州")  # joins after the confirmation: not in the list confirmed
    carry_out_grants()

    credited = set(PointsEntry.objects.values_list("member_id", flat=True))
    assert credited == {m.pk for m in in_city}


@pytest.mark.parametrize(("amount", "reason"), [(100, "  "), (0, "gift"), (-5, "gift"), (10**6, "gift")])
def test_a_grant_without_a_reason_or_with_a_bad_amount_is_refused(client, supervisor, amount, reason):
    client.force_login(supervisor)
    member = MemberFactory()

    response = action(client, "grant_points", [member], apply={"amount": amount, "reason": reason, "token": TOKEN})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert not LoyaltyJobRun.objects.exists()


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_supervisors_may_give_points_or_issue_coupons_in_bulk(client, request, role):
    client.force_login(request.getfixturevalue(role))
    member = MemberFactory()

    page = client.get(CHANGELIST)
    if page.status_code == 200 and page.context.get("action_form"):
        choices = {name for name, _ in page.context["action_form"].fields["action"].choices}
        assert not {"grant_points", "issue_coupons"} & choices
    action(client, "grant_points", [member], apply={"amount": 10, "reason": "x", "token": TOKEN})

    assert not LoyaltyJobRun.objects.exists()


def test_a_supervisor_issues_one_coupon_to_each_selected_member_once(client, supervisor):
    client.force_login(supervisor)
    chosen = MemberFactory.create_batch(3)
    batch = CouponBatch.objects.create(
        name="满 200 减 50", value=Decimal(50), min_spend=Decimal(200), valid_until=timezone.now() + timedelta(days=30)
    )
    CouponBatch.objects.create(
        name="past",
        value=Decimal(5),
        valid_from=timezone.now() - timedelta(days=60),
        valid_until=timezone.now() - timedelta(days=1),
    )

    confirm = action(client, "issue_coupons", chosen)
    assert confirm.status_code == 200
    assert list(confirm.context["form"].fields["batch"].queryset) == [batch]

    form = {"batch": batch.pk, "token": TOKEN}
    assert action(client, "issue_coupons", chosen, apply=form).status_code == 302
    action(client, "issue_coupons", chosen, apply=form)
    assert not Coupon.objects.exists()
    carry_out_grants()

    assert sorted(Coupon.objects.values_list("member_id", flat=True)) == sorted(m.pk for m in chosen)
    assert set(Coupon.objects.values_list("batch_id", flat=True)) == {batch.pk}


def test_a_batch_that_expired_after_confirming_fails_the_run_once_with_its_reason(client, supervisor, caplog):
    client.force_login(supervisor)
    chosen = MemberFactory.create_batch(2)
    batch = CouponBatch.objects.create(
        name="周末券",
        value=Decimal(10),
        valid_from=timezone.now() - timedelta(days=2),
        valid_until=timezone.now() + timedelta(days=1),
    )
    action(client, "issue_coupons", chosen, apply={"batch": batch.pk, "token": TOKEN})
    CouponBatch.objects.filter(pk=batch.pk).update(valid_until=timezone.now() - timedelta(minutes=1))
    run = LoyaltyJobRun.objects.get(key=TOKEN)

    result = run_member_list_grant.apply(args=[run.pk])

    run.refresh_from_db()
    assert result.failed() and run.status == LoyaltyJobRun.Status.FAILED
    assert "expired" in run.error
    assert not Coupon.objects.exists()
    # Refused once, not retried: a retry could only be refused again.
    assert sum("grant run" in record.getMessage() for record in caplog.records) == 1


def test_coupons_go_to_the_whole_filtered_list(client, supervisor):
    client.force_login(supervisor)
    in_city = MemberFactory.create_batch(3, city="苏州")
    MemberFactory(city="南京")
    batch = CouponBatch.objects.create(name="城市券", value=Decimal(10), valid_until=timezone.now() + timedelta(days=3))

    action(
        client,
        "issue_coupons",
        in_city[:1],
        select_across=True,
        query="?city=苏州",
        apply={"batch": batch.pk, "token": TOKEN},
    )
    carry_out_grants()

    assert set(Coupon.objects.values_list("member_id", flat=True)) == {m.pk for m in in_city}
    assert Member.objects.count() == 4
