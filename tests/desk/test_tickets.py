"""Opening tickets, affected members, the steps and the timeline."""

from datetime import timedelta

import pytest

from campaigns.models import Delivery, DeliveryStatus, MessageCategory
from crm.core.exceptions import ApplicationError
from crm.desk import services
from crm.desk.models import EventKind, SlaPolicy, Ticket, TicketMember, TicketStatus
from members.models import EventKind as MemberEventKind
from tests.factories import MemberEventFactory, MemberFactory

pytestmark = pytest.mark.django_db


def affected(ticket) -> set[int]:
    return set(TicketMember.objects.filter(ticket=ticket).values_list("member_id", flat=True))


def kinds(ticket) -> list[str]:
    return list(ticket.events.order_by("pk").values_list("kind", flat=True))


def test_opening_starts_the_clocks_from_the_severity_policy(open_ticket, members, operator, now):
    assert open_ticket.status == TicketStatus.OPEN
    assert open_ticket.opened_at == now
    assert (open_ticket.tell_minutes, open_ticket.time_minutes, open_ticket.trust_minutes) == (15, 60, 1440)
    assert affected(open_ticket) == {m.pk for m in members}
    assert open_ticket.affected_count == 4
    assert open_ticket.owner == operator
    opened = open_ticket.events.get()
    assert (opened.kind, opened.actor, opened.at) == (EventKind.OPENED, operator, now)


def test_staff_set_the_deadlines_per_severity_and_a_change_never_moves_a_running_clock(members, now):
    SlaPolicy.objects.filter(severity="critical").update(tell_minutes=5, time_minutes=30, trust_minutes=240)
    ticket = services.ticket_open(
        title="Food safety",
        description="",
        severity="critical",
        source="staff",
        member_numbers=members[0].external_id,
        now=now,
    )
    SlaPolicy.objects.filter(severity="critical").update(tell_minutes=50)
    ticket.refresh_from_db()
    assert (ticket.tell_minutes, ticket.time_minutes, ticket.trust_minutes) == (5, 30, 240)


def test_unknown_member_numbers_are_reported_on_the_timeline(members, now):
    ticket = services.ticket_open(
        title="t",
        description="",
        severity="low",
        source="staff",
        member_numbers=f"{members[0].external_id}, NOPE1 NOPE2",
        now=now,
    )
    assert affected(ticket) == {members[0].pk}
    assert "NOPE1" in ticket.events.get().note


def test_a_community_group_is_its_members_now(now):
    stayed, left, came_back, other_group = MemberFactory.create_batch(4)
    for member in (stayed, left, came_back):
        MemberEventFactory(
            member=member,
            kind=MemberEventKind.GROUP_JOIN,
            occurred_at=now - timedelta(days=9),
            payload={"group": "上海会员1群"},
            amount=None,
        )
    MemberEventFactory(
        member=other_group,
        kind=MemberEventKind.GROUP_JOIN,
        occurred_at=now - timedelta(days=9),
        payload={"group": "北京会员2群"},
        amount=None,
    )
    for member, days in ((left, 5), (came_back, 5)):
        MemberEventFactory(
            member=member,
            kind=MemberEventKind.GROUP_EXIT,
            occurred_at=now - timedelta(days=days),
            payload={"group": "上海会员1群"},
            amount=None,
        )
    MemberEventFactory(
        member=came_back,
        kind=MemberEventKind.GROUP_JOIN,
        occurred_at=now - timedelta(days=2),
        payload={"group": "上海会员1群"},
        amount=None,
    )

    ticket = services.ticket_open(
        title="t", description="", severity="high", source="staff", group="上海会员1群", now=now
    )

    assert affected(ticket) == {stayed.pk, came_back.pk}


def test_a_segment_is_its_members_as_last_computed(members, now):
    from members.models_layers import Segment, SegmentMember

    segment = Segment.objects.create(name="Shanghai VIP", rules={})
    SegmentMember.objects.bulk_create(SegmentMember(segment=segment, member=m, added_at=now) for m in members[:2])
    ticket = services.ticket_open(title="t", description="", severity="high", source="staff", segment=segment, now=now)
    assert affected(ticket) == {members[0].pk, members[1].pk}


def test_bad_input_is_refused_with_a_clear_error_and_nothing_is_written(members, now):
    cases = [
        {"title": " ", "severity": "high", "member_numbers": members[0].external_id},
        {"title": "t", "severity": "apocalyptic", "member_numbers": members[0].external_id},
        {"title": "t", "severity": "high", "member_numbers": members[0].external_id, "group": "g"},
        {"title": "t", "severity": "high"},  # opened without affected members
    ]
    for case in cases:
        with pytest.raises(ApplicationError):
            services.ticket_open(description="", source="staff", now=now, **case)
    assert not Ticket.objects.exists()


def test_an_alarm_opens_a_draft_without_clocks_that_staff_open_later(members, operator, now):
    draft = services.ticket_open(title="Complaints up", description="", severity="high", source="alarm", draft=True)
    assert (draft.status, draft.opened_at, draft.source) == (TicketStatus.DRAFT, None, "alarm")
    with pytest.raises(ApplicationError):
        services.ticket_activate(ticket=draft, actor=operator, now=now)
    services.ticket_draft_update(ticket=draft, actor=operator, group="上海会员1群")
    services.ticket_draft_update(ticket=draft, actor=operator, member_numbers=members[0].external_id)
    ticket = services.ticket_activate(ticket=draft, actor=operator, now=now + timedelta(hours=1))
    assert (ticket.status, ticket.opened_at, ticket.group) == (TicketStatus.OPEN, now + timedelta(hours=1), "")
    assert affected(ticket) == {members[0].pk}
    assert kinds(ticket) == [EventKind.DRAFTED, EventKind.OPENED]


def test_tell_and_time_go_through_the_outbox_as_transactional_notices_once(open_ticket, members, operator, now):
    ticket = services.ticket_announce(
        ticket=open_ticket,
        actor=operator,
        body="亲爱的{{ member.name }}，配送延误，我们正在处理。",
        now=now + timedelta(minutes=9),
    )
    assert ticket.tell_done_at == now + timedelta(minutes=9)
    campaign = ticket.tell_campaign
    assert campaign.category == MessageCategory.TRANSACTIONAL
    deliveries = Delivery.objects.filter(campaign=campaign, step="tell")
    assert set(deliveries.values_list("member_id", flat=True)) == {m.pk for m in members}
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.QUEUED}
    with pytest.raises(ApplicationError):
        services.ticket_announce(ticket=ticket, actor=operator, body="again", now=now)
    assert Delivery.objects.filter(step="tell").count() == 4

    services.ticket_publish_timetable(ticket=ticket, actor=operator, body="今晚 20:00 前全部发出。", now=now)
    ticket.refresh_from_db()
    assert ticket.time_done_at == now
    assert ticket.time_campaign.category == MessageCategory.TRANSACTIONAL
    assert ticket.time_campaign_id != ticket.tell_campaign_id
    assert kinds(ticket) == [EventKind.OPENED, EventKind.ANNOUNCED, EventKind.TIMETABLE]
    announced = ticket.events.get(kind=EventKind.ANNOUNCED)
    assert (announced.actor, announced.clock, announced.data["queued"]) == (operator, "tell", 4)


def test_a_broken_message_is_refused_before_anything_is_queued(open_ticket, operator, now):
    with pytest.raises(ApplicationError):
        services.ticket_announce(ticket=open_ticket, actor=operator, body="{% if %}", now=now)
    with pytest.raises(ApplicationError):
        services.ticket_announce(ticket=open_ticket, actor=operator, body="   ", now=now)
    assert not Delivery.objects.exists()
    open_ticket.refresh_from_db()
    assert open_ticket.tell_done_at is None


def test_pause_resume_close_reopen_and_reassign_are_on_the_timeline(open_ticket, operator, supervisor, now):
    t = open_ticket
    with pytest.raises(ApplicationError):
        services.ticket_pause(ticket=t, actor=operator, reason=" ", now=now)
    services.ticket_pause(
        ticket=t, actor=operator, reason="Waiting for the courier's report", now=now + timedelta(minutes=5)
    )
    with pytest.raises(ApplicationError):
        services.ticket_pause(ticket=t, actor=operator, reason="again", now=now)
    t = services.ticket_resume(ticket=t, actor=operator, now=now + timedelta(minutes=35))
    assert (t.status, t.paused_seconds, t.paused_at) == (TicketStatus.OPEN, 1800, None)
    t = services.ticket_reassign(ticket=t, actor=operator, owner=supervisor, note="escalated", now=now)
    assert t.owner == supervisor
    t = services.ticket_close(ticket=t, actor=supervisor, note="resolved", now=now + timedelta(hours=2))
    assert (t.status, t.closed_at) == (TicketStatus.CLOSED, now + timedelta(hours=2))
    t = services.ticket_reopen(
        ticket=t, actor=supervisor, reason="members still complaining", now=now + timedelta(hours=3)
    )
    assert (t.status, t.closed_at, t.paused_seconds) == (TicketStatus.OPEN, None, 1800 + 3600)
    assert kinds(t) == [
        EventKind.OPENED,
        EventKind.PAUSED,
        EventKind.RESUMED,
        EventKind.REASSIGNED,
        EventKind.CLOSED,
        EventKind.REOPENED,
    ]
    reassigned = t.events.get(kind=EventKind.REASSIGNED)
    assert reassigned.data == {"from": "operator", "to": "supervisor"}


def test_auditors_read_but_cannot_work_tickets(open_ticket, auditor, now):
    with pytest.raises(ApplicationError):
        services.ticket_pause(ticket=open_ticket, actor=auditor, reason="x", now=now)
    with pytest.raises(ApplicationError):
        services.ticket_open(
            title="t", description="", severity="high", source="staff", opened_by=auditor, member_numbers="M1"
        )
    assert auditor.has_perm("desk.view_ticket") and not auditor.has_perm("desk.change_ticket")


def test_the_report_follows_each_tickets_members_for_its_own_week_in_a_fixed_number_of_queries(
    members, operator, now, django_assert_max_num_queries
):
    from crm.desk.selectors import desk_report

    def opened(title, audience, at):
        return services.ticket_open(
            title=title, description="", severity="low", source="staff", opened_by=operator,
            member_numbers=[m.external_id for m in audience], now=at,
        )  # fmt: skip

    early = opened("Early", members[:2], now - timedelta(days=20))
    late = opened("Late", members, now - timedelta(days=3))
    # members[0] complains in the early ticket's week (not the late one's); members[1] leaves a group in
    # the late ticket's week (it left after the early one's week ended); members[2] complains too late.
    for member, kind, at in [
        (members[0], MemberEventKind.COMPLAINT, early.opened_at + timedelta(days=2)),
        (members[1], MemberEventKind.GROUP_EXIT, late.opened_at + timedelta(hours=5)),
        (members[2], MemberEventKind.COMPLAINT, late.opened_at + timedelta(days=8)),
    ]:
        MemberEventFactory(member=member, kind=kind, occurred_at=at, amount=None, payload={"group": "g"})

    with django_assert_max_num_queries(6):
        rows = {row.title: row for row in desk_report(start=now - timedelta(days=30), end=now)}

    assert (rows["Early"].complaint_rate, rows["Early"].exit_rate) == (0.5, 0.0)
    assert (rows["Late"].complaint_rate, rows["Late"].exit_rate) == (0.0, 0.25)
    assert rows["Early"].points == rows["Late"].points == 0
