"""Complaints are recorded as `complaint` events, once per (source, external_id)."""

import pytest

from crm.models import Scope
from members.models import MemberEvent
from tests.api.conftest import assert_error
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

COMPLAINTS = "/api/v1/complaints/"
BODY = {
    "member_external_id": "M1",
    "source": "wecom",
    "external_id": "c-1",
    "category": "quality",
    "text": "奶茶是凉的",
    "order_reference": "o-9",
}


def test_a_complaint_is_recorded_once(make_client):
    MemberFactory(external_id="M1")
    client = make_client(scopes=[Scope.TICKETS_WRITE])

    first = client.post(COMPLAINTS, BODY, format="json")
    again = client.post(COMPLAINTS, BODY, format="json")

    assert (first.status_code, first.json()["status"]) == (201, "created")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    event = MemberEvent.objects.get()
    assert event.kind == "complaint"
    assert event.payload == {"category": "quality", "text": "奶茶是凉的", "order_reference": "o-9"}


def test_a_complaint_needs_a_known_member_and_the_tickets_scope(make_client):
    MemberFactory(external_id="M1")

    assert_error(
        make_client().post(COMPLAINTS, {**BODY, "member_external_id": "nobody"}, format="json"), 404, "not_found"
    )
    assert_error(
        make_client(scopes=[Scope.EVENTS_WRITE]).post(COMPLAINTS, BODY, format="json"), 403, "permission_denied"
    )
    assert_error(make_client().post(COMPLAINTS, {**BODY, "category": "rude"}, format="json"), 400, "invalid")
    assert not MemberEvent.objects.exists()
