"""RFM scores and value layers equal an independent computation on a generated history."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members.models import EventKind
from members.models_layers import LayerJobRun, LayerSettings, MemberScore, ValueLayer
from members.services.layers import layers_recompute_full
from tests.factories import MemberFactory
from tests.factories.layers import event, ingest

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _history(now, *, members=40, seed=7):
    """Members with purchases (ties on purpose), refunds, purchases outside the window, and none."""
    rng = random.Random(seed)
    people = MemberFactory.create_batch(members, joined_at=now - 500 * DAY)
    events = []
    for index, member in enumerate(people):
        if index % 5 == 0:
            continue  # never bought
        count = rng.choice([1, 2, 2, 3, 5])  # repeated counts and amounts make ties
        for _ in range(count):
            days = rng.choice([3, 10, 10, 40, 120, 200, 300]) + 0.3
            events.append(
                event(member, EventKind.PURCHASE, at=now - days * DAY, amount=rng.choice([50, 100, 100, 399]))
            )
        if index % 7 == 0:
            events.append(event(member, EventKind.REFUND, at=now - 2.5 * DAY, amount=50))
        if index % 6 == 0:
            events.append(event(member, EventKind.PURCHASE, at=now - 400.3 * DAY, amount=999))  # outside the window
    ingest(events)
    return people


def _expected(people, now, *, window=365, buckets=5, high=10, potential=30):
    """Recompute RFM and layers in plain Python from the events, as the docs define them."""
    figures = {}
    for member in people:
        in_window = [e for e in member.events.all() if now - window * DAY <= e.occurred_at <= now]
        bought = [e for e in in_window if e.kind == EventKind.PURCHASE]
        refunds = [e for e in in_window if e.kind == EventKind.REFUND]
        all_purchases = [e.occurred_at for e in member.events.all() if e.kind == EventKind.PURCHASE]
        figures[member.pk] = {
            "frequency": len(bought),
            "monetary": sum((e.amount for e in bought), Decimal(0)) - sum((e.amount for e in refunds), Decimal(0)),
            "recency_days": (now - max(all_purchases)) // DAY if all_purchases else None,
        }
    buyers = [pk for pk, f in figures.items() if f["frequency"] > 0]

    def scores(key):
        values = {pk: key(figures[pk]) for pk in buyers}
        result = {}
        for pk, value in values.items():
            rank = 1 + sum(1 for other in values.values() if other < value)
            result[pk] = 1 + (rank - 1) * buckets // len(values)
        return result

    r = scores(lambda f: -f["recency_days"])
    f_ = scores(lambda f: f["frequency"])
    m = scores(lambda f: f["monetary"])
    for pk, fig in figures.items():
        fig.update(r_score=r.get(pk, 1), f_score=f_.get(pk, 1), m_score=m.get(pk, 1))
        fig["rfm_score"] = fig["r_score"] + fig["f_score"] + fig["m_score"]
    keys = {pk: (fig["rfm_score"] if fig["frequency"] else 0) for pk, fig in figures.items()}
    total = len(keys)
    for pk, fig in figures.items():
        rank = 1 + sum(1 for other in keys.values() if other > keys[pk])
        if not fig["frequency"]:
            fig["value_layer"] = ValueLayer.EDGE
        elif (rank - 1) * 100 < high * total:
            fig["value_layer"] = ValueLayer.HIGH
        elif (rank - 1) * 100 < (high + potential) * total:
            fig["value_layer"] = ValueLayer.POTENTIAL
        else:
            fig["value_layer"] = ValueLayer.EDGE
    return figures


def _expected_stage(member, frequency, now, *, new=30, at_risk=15, churned=30, silent=90) -> str:
    """The lifecycle rules of DOMAIN.md, first match wins, from the member's rollups."""
    member.refresh_from_db()
    life = member.last_active_at or member.joined_at
    if member.joined_at >= now - new * DAY:
        return "new"
    if all(
        (when or member.joined_at) < now - silent * DAY
        for when in (member.last_purchase_at, member.last_interaction_at, member.last_active_at)
    ):
        return "silent"
    if life < now - churned * DAY:
        return "churned"
    if life < now - at_risk * DAY:
        return "at_risk"
    return "paying" if frequency else "active"


def _computed():
    return {
        s.member_id: {
            "frequency": s.frequency,
            "monetary": s.monetary,
            "recency_days": s.recency_days,
            "r_score": s.r_score,
            "f_score": s.f_score,
            "m_score": s.m_score,
            "rfm_score": s.rfm_score,
            "value_layer": s.value_layer,
        }
        for s in MemberScore.objects.all()
    }


def test_rfm_scores_and_layers_match_an_independent_computation():
    now = timezone.now()
    people = _history(now)

    # Some members also engage without buying, some joined lately, some only left a group.
    ingest(event(m, EventKind.CHECK_IN, at=now - (i % 40 + 0.6) * DAY) for i, m in enumerate(people) if i % 3 == 0)
    ingest(event(m, EventKind.GROUP_EXIT, at=now - 1.6 * DAY) for m in people[1::4])
    for member in people[2::9]:
        member.joined_at = now - 12 * DAY
        member.save(update_fields=["joined_at"])

    run = layers_recompute_full(now=now, range_size=7)  # several ranges, so cut points are global

    assert run.status == LayerJobRun.Status.SUCCEEDED
    assert run.rows == len(people)
    expected = _expected(people, now)
    assert _computed() == expected
    stages = dict(MemberScore.objects.values_list("member_id", "lifecycle_stage"))
    assert stages == {m.pk: _expected_stage(m, expected[m.pk]["frequency"], now) for m in people}
    assert len(set(stages.values())) >= 4


def test_ties_share_a_score_and_members_without_purchases_score_lowest_and_sit_in_the_edge_layer():
    now = timezone.now()
    same = MemberFactory.create_batch(4, joined_at=now - 400 * DAY)
    never = MemberFactory(joined_at=now - 400 * DAY)
    big = MemberFactory(joined_at=now - 400 * DAY)
    ingest([event(m, EventKind.PURCHASE, at=now - 5.3 * DAY, amount=100) for m in same])
    ingest([event(big, EventKind.PURCHASE, at=now - (d + 0.3) * DAY, amount=900) for d in (1, 2, 3)])

    layers_recompute_full(now=now)

    tied = {(s.r_score, s.f_score, s.m_score, s.value_layer) for s in MemberScore.objects.filter(member__in=same)}
    assert len(tied) == 1
    none = MemberScore.objects.get(member=never)
    assert (none.r_score, none.f_score, none.m_score, none.value_layer) == (1, 1, 1, ValueLayer.EDGE)
    assert none.recency_days is None and none.frequency == 0
    top = MemberScore.objects.get(member=big)
    assert (top.r_score, top.f_score, top.m_score, top.value_layer) == (5, 5, 5, ValueLayer.HIGH)


def test_thresholds_edited_in_the_admin_apply_at_the_next_run():
    now = timezone.now()
    people = _history(now, members=20, seed=3)
    layers_recompute_full(now=now)
    before = _computed()

    settings_row = LayerSettings.load()
    settings_row.rfm_window_days = 30
    settings_row.score_buckets = 3
    settings_row.high_value_percent = 20
    settings_row.trend_days = 10
    settings_row.save()
    layers_recompute_full(now=now)

    after = _computed()
    assert after != before
    assert after == _expected(people, now, window=30, buckets=3, high=20)
    assert max(s["r_score"] for s in after.values()) <= 3
