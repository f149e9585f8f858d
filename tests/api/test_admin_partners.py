"""Staff manage partners and keys in the admin: a key's secret is shown once, revoking is final."""

import re

import pytest
from django.contrib.messages import get_messages
from rest_framework.test import APIClient

from crm.models import Partner, PartnerAPIKey
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_a_supervisor_creates_a_key_and_sees_its_secret_once(client, supervisor):
    MemberFactory(external_id="M1")
    partner = Partner.objects.create(name="POS", rate_limit_per_minute=100)
    client.force_login(supervisor)

    response = client.post(
        "/admin/crm/partnerapikey/add/",
        {"partner": partner.pk, "name": "till 3", "scopes": ["members:read", "points:read"], "expiry_date": ""},
    )

    assert response.status_code == 302
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    secret = re.search(r"is (\S+\.\S+) —", messages[0]).group(1)
    key = PartnerAPIKey.objects.get()
    assert (key.partner, key.scopes, key.prefix) == (partner, ["members:read", "points:read"], secret.split(".")[0])
    client.get("/admin/")  # the page after the redirect shows the message, once
    assert secret not in client.get(f"/admin/crm/partnerapikey/{key.pk}/change/").content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert api.get("/api/v1/members/M1/").status_code == 200


def test_revoking_from_the_admin_is_final(client, supervisor, make_client):
    MemberFactory(external_id="M1")
    api = make_client()
    client.force_login(supervisor)

    client.post(
        "/admin/crm/partnerapikey/",
        {"action": "revoke_keys", "_selected_action": [api.api_key.pk]},
    )

    api.api_key.refresh_from_db()
    assert api.api_key.revoked
    assert api.get("/api/v1/members/M1/").status_code == 401


def test_operators_do_not_manage_partners(client, operator):
    client.force_login(operator)

    assert client.get("/admin/crm/partner/").status_code == 403
    assert client.get("/admin/crm/partnerapikey/add/").status_code == 403


def test_the_partner_changelist_shows_key_counts(client, supervisor, make_client):
    make_client()
    client.force_login(supervisor)

    response = client.get("/admin/crm/partner/")

    assert response.status_code == 200
    assert "Shop" in response.content.decode()
