"""Delivery receipts from gateways (signed, no API key) and the tiers list."""

import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.channels import sign
from campaigns.models import ChannelConfig, Delivery
from crm.models import Scope
from tests.api.conftest import assert_error
from tests.factories import MemberFactory
from tests.factories.campaigns import CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_delivery(db):
    ChannelConfig.objects.update_or_create(channel="sms", defaults={"secret": "s3cret", "enabled": True})
    now = timezone.now()
    return Delivery.objects.create(
        campaign=CampaignFactory(),
        member=MemberFactory(),
        channel="sms",
        category="promotion",
        status="sent",
        scheduled_for=now,
        next_attempt_at=now,
        sent_at=now,
    )


def _receipt(body: dict, secret: str = "s3cret", channel: str = "sms"):
    raw = json.dumps(body).encode()
    return APIClient().post(
        f"/api/v1/deliveries/receipts/{channel}/",
        raw,
        content_type="application/json",
        HTTP_X_CRM_SIGNATURE=sign(secret, raw),
    )


def test_a_signed_receipt_moves_the_delivery_forward_once(sent_delivery):
    opened = _receipt({"delivery_id": sent_delivery.pk, "status": "opened"})
    late = _receipt({"delivery_id": sent_delivery.pk, "status": "delivered"})

    assert opened.status_code == 200 and opened.json() == {"delivery_id": sent_delivery.pk, "status": "opened"}
    assert late.json()["status"] == "opened"
    sent_delivery.refresh_from_db()
    assert sent_delivery.delivered_at is not None and sent_delivery.opened_at is not None


def test_a_receipt_with_a_bad_signature_or_channel_changes_nothing(sent_delivery):
    assert_error(_receipt({"delivery_id": sent_delivery.pk, "status": "opened"}, secret="guess"), 422, "rejected")
    assert_error(_receipt({"delivery_id": sent_delivery.pk, "status": "opened"}, channel="fax"), 422, "rejected")
    sent_delivery.refresh_from_db()
    assert sent_delivery.status == "sent"


def test_tiers_are_listed_lowest_first(make_client):
    body = make_client(scopes=[Scope.MEMBERS_READ]).get("/api/v1/tiers/").json()

    assert [tier["rank"] for tier in body] == sorted(tier["rank"] for tier in body)
    assert {"code", "name", "min_spend", "discount_percent", "benefits"} <= set(body[0])
    assert_error(make_client(scopes=[Scope.POINTS_READ]).get("/api/v1/tiers/"), 403, "permission_denied")
