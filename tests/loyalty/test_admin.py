"""The loyalty admin: a read-only ledger, editable settings, and adjustments for supervisors only."""

import pytest
from django.urls import reverse

from loyalty.models import EntryKind, LoyaltySettings, PointsAccount, PointsEntry
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory, RedeemFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db

LEDGER = reverse("admin:loyalty_pointsentry_changelist")
ACCOUNTS = reverse("admin:loyalty_pointsaccount_changelist")
ADJUST = reverse("admin:loyalty_pointsentry_adjust")


def available_actions(response) -> set[str]:
    action_form = response.context["action_form"]  # None when the user may run no action
    return {name for name, _ in action_form.fields["action"].choices if name} if action_form else set()


@pytest.mark.parametrize(
    ("role", "actions"),
    [("operator", set()), ("auditor", set()), ("supervisor", {"reverse_entries"})],
)
def test_every_role_sees_the_ledger_and_only_supervisors_may_reverse(client, request, role, actions, member):
    client.force_login(request.getfixturevalue(role))
    EarnFactory(member=member)

    response = client.get(LEDGER)

    assert response.status_code == 200
    assert available_actions(response) == actions
    assert (ADJUST in response.text) is (role == "supervisor")


def test_the_ledger_cannot_be_edited_added_to_or_deleted_from(client, supervisor, member):
    client.force_login(supervisor)
    entry = EarnFactory(member=member, amount=100)
    change = reverse("admin:loyalty_pointsentry_change", args=[entry.pk])

    page = client.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.text

    assert client.post(change, {"reason": "edited", "amount": 1}).status_code == 403
    assert client.get(reverse("admin:loyalty_pointsentry_add")).status_code == 403
    assert client.post(reverse("admin:loyalty_pointsentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert (entry.reason, entry.amount) == ("test", 100)


def test_an_entry_page_shows_the_lots_a_redemption_used(client, auditor, member):
    client.force_login(auditor)
    lot = EarnFactory(member=member, amount=100)
    redemption = RedeemFactory(member=member, amount=30)

    page = client.get(reverse("admin:loyalty_pointsentry_change", args=[redemption.pk]))

    allocations = page.context["inline_admin_formsets"][0].formset.queryset
    assert list(allocations.values_list("lot_id", "amount")) == [(lot.pk, 30)]


def test_ledger_and_accounts_lists_take_a_bounded_number_of_queries(client, supervisor, django_assert_max_num_queries):
    client.force_login(supervisor)
    for _ in range(30):
        member = MemberFactory()
        EarnFactory(member=member, amount=100)
        RedeemFactory(member=member, amount=10)

    with django_assert_max_num_queries(12):
        assert client.get(LEDGER).status_code == 200
    with django_assert_max_num_queries(12):
        assert client.get(ACCOUNTS).status_code == 200


def test_an_account_page_shows_what_expires_when(client, operator, member):
    client.force_login(operator)
    EarnFactory(member=member, amount=77)
    account = PointsAccount.objects.get(member=member)

    page = client.get(reverse("admin:loyalty_pointsaccount_change", args=[account.pk]))

    assert page.status_code == 200
    assert "<td>77</td>" in page.text
    assert 'name="_save"' not in page.text


# Adjusting one member ----------------------------------------------------------------------


def adjust(client, member, *, amount, reason, token="0" * 32):
    return client.post(ADJUST, {"member": member.pk, "amount": amount, "reason": reason, "token": token})


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_adjusting_is_refused_without_the_permission(client, request, role, member):
    client.force_login(request.getfixturevalue(role))

    assert client.get(ADJUST).status_code == 403
    assert adjust(client, member, amount=100, reason="goodwill").status_code == 403
    assert not PointsEntry.objects.exists()


def test_a_supervisor_adjustment_is_recorded_with_its_reason_once(client, supervisor, member):
    client.force_login(supervisor)
    assert client.get(ADJUST, {"member": member.pk}).status_code == 200

    response = adjust(client, member, amount=100, reason="late delivery, apology")
    again = adjust(client, member, amount=100, reason="late delivery, apology")  # a double click

    entry = PointsEntry.objects.get()
    assert response.status_code == again.status_code == 302
    assert response["Location"] == reverse("admin:loyalty_pointsentry_change", args=[entry.pk])
    assert (entry.kind, entry.amount, entry.reason, entry.actor) == (
        EntryKind.ADJUST,
        100,
        "late delivery, apology",
        supervisor,
    )
    assert PointsAccount.objects.get(member=member).balance == 100


def test_an_adjustment_without_a_reason_or_points_is_refused(client, supervisor, member):
    client.force_login(supervisor)

    for amount, reason in ((100, ""), (0, "nothing")):
        response = adjust(client, member, amount=amount, reason=reason)
        assert response.status_code == 200
        assert response.context["form"].errors
    assert not PointsEntry.objects.exists()


def test_taking_more_points_than_the_member_has_shows_why(client, supervisor, member):
    client.force_login(supervisor)
    EarnFactory(member=member, amount=10)

    response = adjust(client, member, amount=-50, reason="correction")

    assert response.status_code == 200
    assert "Not enough points" in str(response.context["form"].non_field_errors())
    assert PointsAccount.objects.get(member=member).balance == 10


# Actions -----------------------------------------------------------------------------------


def test_supervisors_adjust_selected_accounts_through_an_action(client, supervisor):
    client.force_login(supervisor)
    members = [MemberFactory() for _ in range(3)]
    for member in members:
        EarnFactory(member=member, amount=10)
    selected = [str(pk) for pk in PointsAccount.objects.values_list("pk", flat=True)]
    action = {"action": "adjust_points", "_selected_action": selected, "index": 0}

    page = client.post(ACCOUNTS, action)
    assert page.status_code == 200
    token = page.context["form"]["token"].value()

    response = client.post(ACCOUNTS, {**action, "apply": "1", "amount": 5, "reason": "community day", "token": token})

    assert response.status_code == 302
    adjustments = PointsEntry.objects.filter(kind=EntryKind.ADJUST)
    assert sorted(adjustments.values_list("member_id", "amount", "reason", "actor")) == [
        (member.pk, 5, "community day", supervisor.pk) for member in members
    ]
    assert set(PointsAccount.objects.values_list("balance", flat=True)) == {15}


def test_operators_cannot_run_the_adjust_action(client, operator, member):
    client.force_login(operator)
    EarnFactory(member=member, amount=10)
    account = PointsAccount.objects.get()

    client.post(
        ACCOUNTS,
        {
            "action": "adjust_points",
            "_selected_action": [account.pk],
            "index": 0,
            "apply": "1",
            "amount": 5,
            "reason": "x",
            "token": "1" * 32,
        },
    )

    assert not PointsEntry.objects.filter(kind=EntryKind.ADJUST).exists()


def test_supervisors_reverse_selected_entries_with_a_reason(client, supervisor, member):
    client.force_login(supervisor)
    earn = EarnFactory(member=member, amount=100)
    EarnFactory(member=member, amount=30)

    response = client.post(
        LEDGER,
        {
            "action": "reverse_entries",
            "_selected_action": [earn.pk],
            "index": 0,
            "apply": "1",
            "reason": "order refunded",
            "token": "2" * 32,
        },
    )

    assert response.status_code == 302
    reversal = PointsEntry.objects.get(kind=EntryKind.REVERSE)
    assert (reversal.reverses_id, reversal.amount, reversal.reason, reversal.actor) == (
        earn.pk,
        -100,
        "order refunded",
        supervisor,
    )
    assert_ledger_consistent(member.pk)


# Settings ----------------------------------------------------------------------------------


def test_settings_open_on_their_single_row_and_supervisors_change_them(client, supervisor):
    client.force_login(supervisor)
    change = reverse("admin:loyalty_loyaltysettings_change", args=[LoyaltySettings.SINGLETON_ID])

    assert client.get(reverse("admin:loyalty_loyaltysettings_changelist"))["Location"] == change
    form = {
        "points_per_yuan": 100,
        "redemption_minimum": 1000,
        "expiry_policy": "days",
        "expiry_period": 365,
        "tier_grace_days": 14,
    }
    assert client.post(change, {**form, "points_per_yuan": 0}).status_code == 200  # refused: 0 points per yuan
    assert client.post(change, form).status_code == 302

    config = LoyaltySettings.load()
    assert (config.points_per_yuan, config.redemption_minimum, config.expiry_policy, config.expiry_period) == (
        100,
        1000,
        "days",
        365,
    )
    assert config.tier_grace_days == 14


def test_operators_see_the_settings_but_cannot_change_them(client, operator):
    client.force_login(operator)
    change = reverse("admin:loyalty_loyaltysettings_change", args=[LoyaltySettings.SINGLETON_ID])

    assert client.get(change).status_code == 200
    client.post(change, {"points_per_yuan": 1, "redemption_minimum": 0, "expiry_policy": "never", "expiry_period": 0})

    assert LoyaltySettings.load().points_per_yuan == 50
