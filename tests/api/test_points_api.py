"""Points through the API: balance, history, earn, redeem, reverse, all via loyalty.services."""

import pytest

from crm.models import Partner
from loyalty.models import PointsEntry
from loyalty.selectors import points_balance
from tests.api.conftest import assert_error
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(db):
    return MemberFactory(external_id="M1")


def _move(api, action: str, **body):
    return api.post(f"/api/v1/points/{action}/", {"member_external_id": "M1", "reason": "order", **body}, format="json")


def test_earn_then_the_same_reference_again_records_once(api, member):
    first = _move(api, "earn", points=500, reference="order-1")
    again = _move(api, "earn", points=500, reference="order-1")

    assert first.status_code == 201 and again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["reference"] == "order-1" and first.json()["remaining"] == 500
    assert points_balance(member=member) == 500


def test_references_are_per_partner(api, make_client, member):
    other = make_client(for_partner=Partner.objects.create(name="POS", rate_limit_per_minute=0))

    _move(api, "earn", points=100, reference="r1")
    _move(other, "earn", points=100, reference="r1")

    assert points_balance(member=member) == 200
    history = api.get("/api/v1/members/M1/points/history/").json()["results"]
    assert sorted(entry["reference"] or "" for entry in history) == ["", "r1"]  # the other's is not shown


def test_redeem_spends_and_a_short_balance_is_422(api, member):
    _move(api, "earn", points=100, reference="e1")

    spent = _move(api, "redeem", points=60, reference="r1")
    short = _move(api, "redeem", points=60, reference="r2")

    assert spent.status_code == 201 and spent.json()["points"] == -60
    body = assert_error(short, 422, "rejected")
    assert body["extra"] == {"balance": 40, "amount": 60}
    assert points_balance(member=member) == 40


def test_reverse_a_redemption_by_its_reference(api, member):
    _move(api, "earn", points=100, reference="e1")
    _move(api, "redeem", points=70, reference="r1")

    response = _move(api, "reverse", original_reference="r1", reference="r1-cancel")
    twice = _move(api, "reverse", original_reference="r1", reference="r1-cancel-2")

    assert response.status_code == 201 and response.json()["kind"] == "reverse"
    assert points_balance(member=member) == 100
    assert_error(twice, 422, "rejected")


def test_reversing_an_unknown_reference_is_404(api, member):
    EarnFactory(member=member, amount=10, idempotency_key="system:1")

    assert_error(_move(api, "reverse", original_reference="system:1", reference="x"), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"points": 0, "reference": "a"},
        {"points": -5, "reference": "a"},
        {"points": 2**31, "reference": "a"},
        {"points": "many", "reference": "a"},
        {"points": 5},
        {"points": 5, "reference": "a", "expires_at": "1800-01-01T00:00:00Z"},
    ],
)
def test_bad_movements_are_400(api, member, body):
    assert_error(_move(api, "earn", **body), 400, "invalid")
    assert not PointsEntry.objects.exists()


def test_mass_assignment_on_earn_changes_nothing_else(api, member):
    response = _move(
        api,
        "earn",
        points=10,
        reference="a",
        kind="adjust",
        remaining=10_000,
        amount=10_000,
        member_id=member.pk + 1,
        idempotency_key="hijack",
    )

    assert response.status_code == 201
    entry = PointsEntry.objects.get()
    assert (entry.kind, entry.amount, entry.remaining, entry.member_id) == ("earn", 10, 10, member.pk)
    assert entry.idempotency_key != "hijack"


def test_balance_shows_value_and_what_expires_when(api, member):
    _move(api, "earn", points=100, reference="e1")
    _move(api, "earn", points=50, reference="e2", expires_at="2100-01-01T00:00:00Z")

    body = api.get("/api/v1/members/M1/points/").json()

    assert body["balance"] == 150 and body["yuan_value"] == "3.00" and body["points_per_yuan"] == 50
    assert sum(lot["points"] for lot in body["open_lots"]) == 150


def test_balance_of_a_member_without_points_is_zero(api, member):
    assert api.get("/api/v1/members/M1/points/").json()["balance"] == 0
    assert_error(api.get("/api/v1/members/nobody/points/"), 404, "not_found")


def test_history_pages_with_a_cursor_in_bounded_queries(api, member, django_assert_max_num_queries):
    for n in range(7):
        EarnFactory(member=member, amount=n + 1)
    api.get("/api/v1/members/M1/points/history/")  # caches the key's snapshot

    with django_assert_max_num_queries(2):
        first = api.get("/api/v1/members/M1/points/history/", {"page_size": 5}).json()
    second = api.get(first["next"]).json()

    assert [e["points"] for e in first["results"] + second["results"]] == [7, 6, 5, 4, 3, 2, 1]
    assert second["next"] is None
