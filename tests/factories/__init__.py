"""factory_boy factories shared by the whole suite."""

import itertools
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from members.models import Channel, EventKind, Member, MemberEvent, Tag

_phone_numbers = itertools.count(13_800_000_000)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("correct-horse-battery")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        """UserFactory(roles=["Operator"]) puts the user in those role groups."""
        if create and extracted:
            self.groups.add(*Group.objects.filter(name__in=extracted))


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    external_id = factory.Sequence(lambda n: f"M{n:07d}")
    name = factory.Faker("name", locale="zh_CN")
    phone = factory.LazyFunction(lambda: f"+86{next(_phone_numbers)}")
    city = factory.Iterator(["上海", "北京", "杭州", "成都", "广州"])
    channel = factory.Iterator([c.value for c in Channel])
    joined_at = factory.LazyFunction(timezone.now)


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag-{n}")


class MemberEventFactory(factory.django.DjangoModelFactory):
    """Writes a row directly; tests of rollups must go through members.services.events_ingest."""

    class Meta:
        model = MemberEvent

    member = factory.SubFactory(MemberFactory)
    kind = EventKind.PURCHASE
    amount = Decimal("99.00")
    occurred_at = factory.LazyFunction(timezone.now)
    source = "shop"
    external_id = factory.Sequence(lambda n: f"E{n:09d}")
