"""Who may call the API: partners' keys with scopes, staff with their session; throttling per key."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import Partner, Scope
from crm.services import partner_api_key_revoke
from tests.api.conftest import assert_error
from tests.factories import MemberFactory, UserFactory

pytestmark = pytest.mark.django_db

DETAIL = "/api/v1/members/{}/"


@pytest.fixture
def member(db):
    return MemberFactory(external_id="M1")


def test_a_request_without_a_key_gets_401_with_the_scheme_to_use(member):
    response = APIClient().get(DETAIL.format("M1"))

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(
    "header",
    ["Api-Key nonsense", "Api-Key abcdefgh.wrongsecretwrongsecretwrongsecret", "Api-Key .x", "Api-Key toolongprefix.x"],
)
def test_an_unknown_key_gets_401(member, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_error(client.get(DETAIL.format("M1")), 401, "authentication_failed")


def test_a_key_with_the_right_prefix_but_a_wrong_secret_gets_401(member, make_client):
    client = make_client()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {client.api_key.prefix}.{'x' * 32}")

    assert_error(client.get(DETAIL.format("M1")), 401, "authentication_failed")


def test_a_revoked_key_gets_401_on_its_next_request(member, make_client):
    client = make_client()
    assert client.get(DETAIL.format("M1")).status_code == 200  # the key's snapshot is now cached

    partner_api_key_revoke(api_key=client.api_key)

    body = assert_error(client.get(DETAIL.format("M1")), 401, "authentication_failed")
    assert "revoked" in body["message"]


def test_an_expired_key_gets_401(member, make_client):
    client = make_client(expires_at=timezone.now() + timedelta(hours=1))
    assert client.get(DETAIL.format("M1")).status_code == 200
    type(client.api_key).objects.filter(pk=client.api_key.pk).update(expiry_date=timezone.now() - timedelta(seconds=1))
    client.api_key.refresh_from_db()
    client.api_key.save()  # drops the cached snapshot, as any save does

    body = assert_error(client.get(DETAIL.format("M1")), 401, "authentication_failed")
    assert "expired" in body["message"]


def test_every_key_of_a_deactivated_partner_gets_401(member, make_client, partner):
    client = make_client()
    assert client.get(DETAIL.format("M1")).status_code == 200

    partner.is_active = False
    partner.save()

    assert_error(client.get(DETAIL.format("M1")), 401, "authentication_failed")


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("get", "/api/v1/members/", Scope.MEMBERS_READ),
        ("get", DETAIL.format("M1"), Scope.MEMBERS_READ),
        ("post", "/api/v1/members/upsert/", Scope.MEMBERS_WRITE),
        ("post", "/api/v1/events/batch/", Scope.EVENTS_WRITE),
        ("get", "/api/v1/members/M1/points/", Scope.POINTS_READ),
        ("get", "/api/v1/members/M1/points/history/", Scope.POINTS_READ),
        ("post", "/api/v1/points/earn/", Scope.POINTS_WRITE),
        ("post", "/api/v1/points/redeem/", Scope.POINTS_WRITE),
        ("post", "/api/v1/points/reverse/", Scope.POINTS_WRITE),
        ("post", "/api/v1/complaints/", Scope.TICKETS_WRITE),
        ("get", "/api/v1/tiers/", Scope.MEMBERS_READ),
        ("get", "/api/v1/badges/", Scope.MEMBERS_READ),
        ("get", "/api/v1/rewards/", Scope.POINTS_READ),
        ("post", "/api/v1/rewards/redeem/", Scope.POINTS_WRITE),
        ("post", "/api/v1/coupons/issue/", Scope.COUPONS_WRITE),
        ("post", "/api/v1/coupons/validate/", Scope.COUPONS_WRITE),
        ("post", "/api/v1/coupons/redeem/", Scope.COUPONS_WRITE),
    ],
)
def test_a_key_without_the_scope_gets_403_and_changes_nothing(member, make_client, method, path, scope):
    others = [s for s in Scope.values if s != scope]
    client = make_client(scopes=others)

    response = getattr(client, method)(path, {}, format="json")

    body = assert_error(response, 403, "permission_denied")
    assert scope in body["message"]
    assert make_client(scopes=[scope]).generic(method.upper(), path, "{}", "application/json").status_code != 403


def test_staff_use_the_browsable_api_with_their_session(member, operator):
    client = APIClient()
    client.force_login(operator)

    response = client.get(DETAIL.format("M1"), HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert b"M1" in response.content
    assert client.get(DETAIL.format("M1"), HTTP_ACCEPT="application/json").json()["external_id"] == "M1"


def test_staff_need_the_matching_permission(member, auditor):
    client = APIClient()
    client.force_login(auditor)

    assert client.get(DETAIL.format("M1")).status_code == 200
    assert_error(client.post("/api/v1/members/upsert/", {"external_id": "M2"}, format="json"), 403, "permission_denied")


def test_an_account_that_is_not_staff_gets_403(member):
    client = APIClient()
    client.force_login(UserFactory(username="someone", is_staff=False))

    assert_error(client.get(DETAIL.format("M1")), 403, "permission_denied")


def test_a_key_is_throttled_at_its_partners_limit_with_retry_after(member, make_client):
    partner = Partner.objects.create(name="POS", rate_limit_per_minute=3)
    client = make_client(for_partner=partner)
    other = make_client(for_partner=partner)

    statuses = [client.get(DETAIL.format("M1")).status_code for _ in range(3)]
    response = client.get(DETAIL.format("M1"))

    assert statuses == [200, 200, 200]
    body = assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert body["extra"]["retry_after"] == int(response["Retry-After"])
    # The window is per key: the partner's other key still has its own.
    assert other.get(DETAIL.format("M1")).status_code == 200


def test_the_secret_is_stored_hashed(make_client):
    client = make_client()

    assert client.secret not in client.api_key.hashed_key
    assert client.secret.startswith(client.api_key.prefix + ".")
