"""Database constraints and model invariants of members: the backstop behind every service."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from members.models import EventKind, Member, MemberEvent
from tests.factories import MemberEventFactory, MemberFactory

pytestmark = pytest.mark.django_db


def _raw_phone(member: Member) -> str:
    """The phone exactly as stored, without the field's conversion to a PhoneNumber."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT phone FROM {Member._meta.db_table} WHERE id = %s", [member.pk])
        return cursor.fetchone()[0]


def test_an_event_id_is_unique_per_source():
    first = MemberEventFactory(source="shop", external_id="order-1")

    with pytest.raises(IntegrityError), transaction.atomic():
        MemberEventFactory(member=first.member, source="shop", external_id="order-1")

    MemberEventFactory(member=first.member, source="pos", external_id="order-1")
    assert MemberEvent.objects.filter(external_id="order-1").count() == 2


def test_member_number_is_unique_but_may_be_missing():
    MemberFactory(external_id="VIP001")

    with pytest.raises(IntegrityError), transaction.atomic():
        MemberFactory(external_id="VIP001")

    MemberFactory(external_id=None)
    MemberFactory(external_id=None)
    assert Member.objects.filter(external_id__isnull=True).count() == 2


def test_phone_is_unique_whatever_way_it_was_typed_but_may_be_missing():
    MemberFactory(phone="13800138000")

    with pytest.raises(IntegrityError), transaction.atomic():
        MemberFactory(phone="+86 138-0013-8000")

    MemberFactory(phone=None)
    MemberFactory(phone=None)
    assert Member.objects.filter(phone__isnull=True).count() == 2


@pytest.mark.parametrize(
    "typed",
    ["13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "+8613800138000", "１３８００１３８０００"],
)
def test_phone_is_stored_as_e164(typed):
    member = MemberFactory(phone=typed)

    assert _raw_phone(member) == "+8613800138000"
    assert Member.objects.filter(phone="138 0013 8000").get() == member


def test_an_invalid_phone_fails_validation():
    member = MemberFactory.build(phone="12345")

    with pytest.raises(ValidationError) as error:
        member.full_clean()

    assert "phone" in error.value.message_dict


def test_event_amounts_cannot_be_negative():
    member = MemberFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        MemberEventFactory(member=member, kind=EventKind.REFUND, amount=Decimal("-1.00"))

    MemberEventFactory(member=member, kind=EventKind.PURCHASE, amount=Decimal("0.00"))
    MemberEventFactory(member=member, kind=EventKind.CHECK_IN, amount=None)
    assert member.events.count() == 2


def test_a_negative_amount_is_reported_by_full_clean_too():
    event = MemberEventFactory.build(member=MemberFactory(), amount=Decimal("-5.00"), occurred_at=timezone.now())

    with pytest.raises(ValidationError):
        event.full_clean()


def test_orders_count_cannot_go_negative():
    member = MemberFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        Member.objects.filter(pk=member.pk).update(orders_count=-1)
