from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from members.models import Member
from members.services import EventInput, events_ingest, member_save
from tests.factories import MemberFactory


def test_a_staff_edit_keeps_rollups_that_ingest_added_after_the_member_was_read(db):
    member = MemberFactory(name="王芳", city="上海")
    opened = Member.objects.get(pk=member.pk)  # what the admin page holds while staff type

    events_ingest(events=[EventInput(member_id=member.pk, kind="purchase", occurred_at=timezone.now(),
                                     source="shop", external_id="o-1", amount=Decimal("88.00"))])
    opened.city, opened.notes = "杭州", "VIP 客户"
    member_save(member=opened, changed_fields=["city", "notes"])

    member.refresh_from_db()
    assert (member.city, member.notes) == ("杭州", "VIP 客户")
    assert (member.orders_count, member.total_spent) == (1, Decimal("88.00"))


def test_staff_edit_a_member_through_the_admin(client, supervisor):
    member = MemberFactory(name="王芳", city="上海")
    client.force_login(supervisor)
    url = reverse("admin:members_member_change", args=[member.pk])
    joined = timezone.localtime(member.joined_at)

    response = client.post(url, {
        "name": "王芳", "phone": str(member.phone), "gender": "unknown", "channel": member.channel,
        "city": "杭州", "notes": "VIP 客户",
        "joined_at_0": joined.strftime("%Y-%m-%d"), "joined_at_1": joined.strftime("%H:%M:%S"),
    })

    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert (member.city, member.notes) == ("杭州", "VIP 客户")


def test_staff_add_a_member_from_the_admin(client, supervisor):
    client.force_login(supervisor)
    response = client.post(reverse("admin:members_member_add"), {
        "name": "李雷", "phone": "138 0013 8000", "gender": "unknown", "channel": "wecom",
        "joined_at_0": "2026-11-01", "joined_at_1": "10:00:00",
    })

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert str(Member.objects.get(name="李雷").phone) == "+8613800138000"
