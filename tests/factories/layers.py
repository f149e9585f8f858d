"""Factories and helpers for layers, churn scores and segments.

Behaviour goes in through members.services.events_ingest, as in production, so the rollups on
Member that the stage rules read are what ingest computes.
"""

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import factory

from members.models import EventKind, Member
from members.models_layers import Segment
from members.services import EventInput, events_ingest

_event_ids = itertools.count(1)


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"segment-{n}")
    rules = factory.LazyFunction(lambda: {"op": "and", "rules": []})


def event(member: Member, kind: str, *, at: datetime, amount=None, sub_kind: str = "") -> EventInput:
    return EventInput(
        member_id=member.pk,
        kind=kind,
        occurred_at=at,
        source="test",
        external_id=f"L{next(_event_ids):08d}",
        sub_kind=sub_kind,
        amount=Decimal(str(amount)) if amount is not None else None,
    )


def ingest(events) -> None:
    events_ingest(events=list(events))


def purchases(member: Member, *, now: datetime, days_ago, amount=100) -> list[EventInput]:
    """One purchase per entry of days_ago (floats allowed); amount may be one value or a list."""
    amounts = amount if isinstance(amount, list) else [amount] * len(days_ago)
    return [
        event(member, EventKind.PURCHASE, at=now - timedelta(days=d), amount=a)
        for d, a in zip(days_ago, amounts, strict=True)
    ]
