"""The staff pages and the admin, through Django's test client (the browser tests drive Chromium)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.desk import compensation
from crm.desk.models import CompensationStatus, EventKind, Ticket, TicketStatus
from members.models import EventKind as MemberEventKind
from tests.factories import MemberEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_ticket(members, operator):
    from crm.desk.services import ticket_open

    return ticket_open(
        title="Cold milk tea",
        description="",
        severity="critical",
        source="staff",
        opened_by=operator,
        member_numbers=[m.external_id for m in members],
    )


def test_the_board_shows_open_tickets_with_their_clocks(client, operator, live_ticket):
    client.force_login(operator)
    page = client.get(reverse("desk:board"))
    assert page.status_code == 200
    assert "Cold milk tea" in page.content.decode()

    data = client.get(reverse("desk:board_data")).json()
    (ticket,) = data["tickets"]
    assert ticket["id"] == live_ticket.pk
    assert [c["name"] for c in ticket["clocks"]] == ["tell", "time", "trust"]
    assert 0 < ticket["clocks"][0]["seconds_left"] <= 15 * 60


def test_the_board_needs_staff_with_the_view_permission(client, live_ticket):
    from tests.factories import UserFactory

    assert client.get(reverse("desk:board")).status_code == 302  # to the login
    client.force_login(UserFactory(username="nobody", is_staff=True))
    assert client.get(reverse("desk:board")).status_code == 403
    assert client.get(reverse("desk:board_data")).status_code == 403


def test_operators_work_a_ticket_and_a_supervisor_approves(client, operator, supervisor, live_ticket):
    client.force_login(operator)
    url = lambda action: reverse("desk:ticket_action", args=[live_ticket.pk, action])  # noqa: E731
    assert (
        client.post(
            url("announce"),
            {"announce-body": "我们正在处理", "announce-channel": "wecom", "announce-language": "zh-hans"},
        ).status_code
        == 302
    )
    assert client.post(url("request"), {"kind": "points", "points": "300"}).status_code == 302
    assert client.post(url("approve")).status_code == 403  # operators may not approve
    client.force_login(supervisor)
    assert client.post(url("approve")).status_code == 302
    live_ticket.refresh_from_db()
    assert live_ticket.tell_done_at is not None
    assert (live_ticket.compensation_status, live_ticket.compensation_approved_by) == (
        CompensationStatus.RUNNING,
        supervisor,
    )
    page = client.get(reverse("desk:ticket", args=[live_ticket.pk])).content.decode()
    assert "Compensation approved" in page and "Announcement sent" in page


def test_bad_input_is_a_400_with_the_form_and_changes_nothing(client, operator, live_ticket):
    client.force_login(operator)
    response = client.post(reverse("desk:ticket_action", args=[live_ticket.pk, "request"]), {"kind": "points"})
    assert response.status_code == 400
    assert "How many points each?" in response.content.decode()
    response = client.post(reverse("desk:ticket_action", args=[live_ticket.pk, "pause"]), {"reason": ""})
    assert response.status_code == 400
    live_ticket.refresh_from_db()
    assert (live_ticket.status, live_ticket.compensation_status) == (TicketStatus.OPEN, "")
    assert client.post(reverse("desk:ticket_action", args=[live_ticket.pk, "explode"])).status_code == 404


def test_a_refused_step_is_explained(client, operator, live_ticket):
    client.force_login(operator)
    client.post(reverse("desk:ticket_action", args=[live_ticket.pk, "resume"]))  # not paused
    page = client.get(reverse("desk:ticket", args=[live_ticket.pk])).content.decode()
    assert "cannot be changed this way" in page


def test_staff_open_a_ticket_for_a_community_group(client, operator, members):
    for member in members[:3]:
        MemberEventFactory(
            member=member,
            kind=MemberEventKind.GROUP_JOIN,
            payload={"group": "杭州会员3群"},
            occurred_at=timezone.now() - timedelta(days=3),
            amount=None,
        )
    client.force_login(operator)
    response = client.post(
        reverse("desk:ticket_new"),
        {"title": "Wrong sizes", "severity": "high", "audience_kind": "group", "group": "杭州会员3群"},
    )
    ticket = Ticket.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("desk:ticket", args=[ticket.pk])
    assert (ticket.affected_count, ticket.owner, ticket.status) == (3, operator, TicketStatus.OPEN)

    missing = client.post(reverse("desk:ticket_new"), {"title": "x", "severity": "high", "audience_kind": "group"})
    assert missing.status_code == 400 and Ticket.objects.count() == 1


def test_reports_show_times_breaches_cost_and_exits(
    client, supervisor, operator, second_supervisor, live_ticket, members
):
    from crm.desk.services import ticket_announce

    ticket_announce(ticket=live_ticket, actor=operator, body="sorry", now=live_ticket.opened_at + timedelta(minutes=6))
    compensation.compensation_request(ticket=live_ticket, actor=operator, kind="points", points=100)
    compensation.compensation_approve(ticket=live_ticket, actor=supervisor)
    compensation.compensation_deliver(ticket_id=live_ticket.pk)
    live_ticket.events.create(kind=EventKind.BREACHED, clock="time")
    MemberEventFactory(
        member=members[0],
        kind=MemberEventKind.GROUP_EXIT,
        payload={"group": "g"},
        occurred_at=live_ticket.opened_at + timedelta(days=2),
        amount=None,
    )

    from crm.desk.selectors import desk_report, report_summary

    (row,) = desk_report(start=live_ticket.opened_at - timedelta(days=1), end=timezone.now() + timedelta(days=1))
    assert (row.minutes_to["tell"], row.breached, row.points, row.exit_rate) == (6.0, ["time"], 400, 0.25)
    summary = report_summary([row])
    assert (summary.breach_rate["time"], summary.breach_rate["tell"], summary.points_yuan) == (1.0, 0.0, 8.0)

    client.force_login(second_supervisor)
    page = client.get(reverse("desk:reports"))
    assert page.status_code == 200 and "Cold milk tea" in page.content.decode()


def test_the_admin_lists_tickets_with_clocks_and_shows_the_timeline(admin_client, live_ticket):
    changelist = admin_client.get(reverse("admin:desk_ticket_changelist") + "?severity__exact=critical")
    assert changelist.status_code == 200 and "Cold milk tea" in changelist.content.decode()
    change = admin_client.get(reverse("admin:desk_ticket_change", args=[live_ticket.pk]))
    assert change.status_code == 200
    content = change.content.decode()
    assert "Opened" in content and "Send the announcement" not in content  # the form is titled by its step
    assert "Tell: send the announcement" in content
    assert admin_client.get(reverse("admin:desk_slapolicy_changelist")).status_code == 200


def test_editing_an_open_ticket_in_the_admin_reassigns_it_on_the_timeline(admin_client, live_ticket, supervisor):
    url = reverse("admin:desk_ticket_change", args=[live_ticket.pk])
    inline = {"events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0"}
    form = {"title": "Cold milk tea, all stores", "description": "Wider", "owner": supervisor.pk, **inline}
    response = admin_client.post(url, {**form, "severity": "low"})

    assert response.status_code == 302
    live_ticket.refresh_from_db()
    assert (live_ticket.title, live_ticket.owner, live_ticket.severity) == (
        "Cold milk tea, all stores",
        supervisor,
        "critical",  # fixed once open: its deadlines came from it
    )
    reassigned = live_ticket.events.get(kind=EventKind.REASSIGNED)
    assert reassigned.data["to"] == supervisor.get_username()


def test_the_admin_drafts_a_ticket_and_refuses_two_audiences(admin_client, members):
    url = reverse("admin:desk_ticket_add")
    inline = {"events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0"}
    both = admin_client.post(
        url, {"title": "Rumour", "severity": "high", "member_numbers": members[0].external_id, "group": "上海会员1群"}
    )
    assert both.status_code == 200 and not Ticket.objects.exists()
    assert "one way" in both.content.decode()
    added = admin_client.post(url, {"title": "Rumour", "severity": "high", "group": "上海会员1群", **inline})
    assert added.status_code == 302
    ticket = Ticket.objects.get()
    assert (ticket.status, ticket.audience_kind, ticket.group, ticket.source) == (
        "draft",
        "group",
        "上海会员1群",
        "staff",
    )
    assert ticket.events.get().kind == EventKind.DRAFTED


def test_the_ticket_links_to_its_ledger_entries(client, operator, supervisor, live_ticket, members):
    compensation.compensation_request(ticket=live_ticket, actor=operator, kind="points", points=100)
    compensation.compensation_approve(ticket=live_ticket, actor=supervisor)
    compensation.compensation_deliver(ticket_id=live_ticket.pk)
    client.force_login(operator)
    page = client.get(reverse("desk:ticket", args=[live_ticket.pk])).content.decode()
    link = reverse("admin:loyalty_pointsentry_changelist") + f"?source_ref=ticket%3A{live_ticket.pk}"
    assert link in page
    ledger = client.get(link)
    assert ledger.status_code == 200
    assert ledger.context["cl"].result_count == 4
