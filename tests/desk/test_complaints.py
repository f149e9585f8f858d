"""The complaints API opens a crisis ticket, or joins the open one, by the rule staff set."""

import pytest

from crm.desk.models import DeskSettings, EventKind, Ticket, TicketMember, TicketStatus
from crm.models import Scope
from members.models import MemberEvent
from tests.api.conftest import _fresh_cache, assert_error, make_client, partner  # noqa: F401 - fixtures
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

COMPLAINTS = "/api/v1/complaints/"


def body(member, external_id, **extra):
    return {
        "member_external_id": member.external_id,
        "source": "wecom",
        "external_id": external_id,
        "category": "quality",
        "text": "奶茶是凉的",
        **extra,
    }


@pytest.fixture
def client(make_client):  # noqa: F811
    return make_client(scopes=[Scope.TICKETS_WRITE])


def test_a_severe_complaint_opens_a_ticket_and_the_next_ones_join_it(client):
    first, second = MemberFactory.create_batch(2)

    opened = client.post(COMPLAINTS, body(first, "c-1", severity="high"), format="json")
    joined = client.post(COMPLAINTS, body(second, "c-2", severity="critical"), format="json")
    replay = client.post(COMPLAINTS, body(second, "c-2", severity="critical"), format="json")

    ticket = Ticket.objects.get()
    assert (opened.status_code, opened.json()["ticket"]) == (201, ticket.pk)
    assert (joined.status_code, joined.json()["ticket"]) == (201, ticket.pk)
    assert (replay.status_code, replay.json()["status"], replay.json()["ticket"]) == (200, "duplicate", ticket.pk)
    assert (ticket.source, ticket.status, ticket.severity, ticket.category) == (
        "api",
        TicketStatus.OPEN,
        "high",
        "quality",
    )
    assert set(TicketMember.objects.filter(ticket=ticket).values_list("member_id", flat=True)) == {first.pk, second.pk}
    ticket.refresh_from_db()
    assert ticket.affected_count == 2
    assert ticket.events.filter(kind=EventKind.COMPLAINT).count() == 2
    # The complaint itself is still a behaviour event, as before.
    assert MemberEvent.objects.filter(kind="complaint").count() == 2
    assert MemberEvent.objects.get(external_id="c-1").payload["severity"] == "high"


def test_mild_or_unmarked_complaints_and_other_categories(client):
    member = MemberFactory()
    low = client.post(COMPLAINTS, body(member, "c-1", severity="low"), format="json")
    plain = client.post(COMPLAINTS, body(member, "c-2"), format="json")
    assert (low.json()["ticket"], plain.json()["ticket"]) == (None, None)
    assert not Ticket.objects.exists()

    client.post(COMPLAINTS, body(member, "c-3", severity="high"), format="json")
    client.post(COMPLAINTS, body(member, "c-4", severity="high", category="delivery"), format="json")
    assert sorted(Ticket.objects.values_list("category", flat=True)) == ["delivery", "quality"]


def test_staff_can_switch_the_rule_off_or_raise_it(client):
    member = MemberFactory()
    config = DeskSettings.load()
    config.api_min_severity = "critical"
    config.save()
    assert client.post(COMPLAINTS, body(member, "c-1", severity="high"), format="json").json()["ticket"] is None
    config.api_min_severity = ""
    config.save()
    assert client.post(COMPLAINTS, body(member, "c-2", severity="critical"), format="json").json()["ticket"] is None
    assert not Ticket.objects.exists()


def test_a_closed_ticket_is_not_joined(client, operator):
    from crm.desk.services import ticket_close

    member = MemberFactory()
    first = client.post(COMPLAINTS, body(member, "c-1", severity="high"), format="json").json()["ticket"]
    ticket_close(ticket=Ticket.objects.get(pk=first), actor=operator)
    second = client.post(COMPLAINTS, body(member, "c-2", severity="high"), format="json").json()["ticket"]
    assert second != first


def test_an_unknown_severity_is_a_field_error_and_records_nothing(client):
    member = MemberFactory()
    assert_error(client.post(COMPLAINTS, body(member, "c-1", severity="apocalyptic"), format="json"), 400, "invalid")
    assert not MemberEvent.objects.exists() and not Ticket.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_complaints_arriving_together_open_one_ticket():
    from crm.desk.complaints import ticket_for_complaint
    from tests.loyalty.test_concurrency import in_parallel

    members = MemberFactory.create_batch(6)
    results = in_parallel(
        6,
        lambda i: (
            ticket_for_complaint(
                member=members[i], severity="high", category="quality", text="cold", source="wecom", external_id=f"c{i}"
            ).pk
        ),
    )
    assert len(set(results)) == 1, results
    assert TicketMember.objects.filter(ticket_id=results[0]).count() == 6
