"""Lifecycle stages, stage transitions, churn risk with reasons, automatic tags."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.translation import override

from members.models import EventKind, InteractionKind, MemberTag
from members.models_layers import (
    AutomaticTag,
    LayerSettings,
    LayerSnapshot,
    LifecycleStage,
    MemberScore,
    StageTransition,
)
from members.services.layers import churn_reasons_text, layers_recompute_full
from tests.factories import MemberFactory
from tests.factories.layers import event, ingest, purchases

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _stage(member) -> str:
    return MemberScore.objects.get(member=member).lifecycle_stage


def test_stage_rules():
    now = timezone.now()
    old = now - 300 * DAY
    new = MemberFactory(joined_at=now - 10 * DAY)
    paying = MemberFactory(joined_at=old)
    active = MemberFactory(joined_at=old)
    at_risk = MemberFactory(joined_at=old)
    churned = MemberFactory(joined_at=old)
    silent = MemberFactory(joined_at=old)
    never_seen = MemberFactory(joined_at=old)
    ingest(purchases(paying, now=now, days_ago=[3.2]))
    ingest([event(active, EventKind.CHECK_IN, at=now - 2.2 * DAY)])
    ingest(purchases(at_risk, now=now, days_ago=[20.2]))
    ingest(purchases(churned, now=now, days_ago=[45.2]))
    ingest(purchases(silent, now=now, days_ago=[100.2]))
    ingest([event(silent, EventKind.INTERACTION, at=now - 95.2 * DAY, sub_kind=InteractionKind.LIKE)])

    layers_recompute_full(now=now)

    assert _stage(new) == LifecycleStage.NEW
    assert _stage(paying) == LifecycleStage.PAYING
    assert _stage(active) == LifecycleStage.ACTIVE
    assert _stage(at_risk) == LifecycleStage.AT_RISK
    assert _stage(churned) == LifecycleStage.CHURNED
    assert _stage(silent) == LifecycleStage.SILENT
    assert _stage(never_seen) == LifecycleStage.SILENT


def test_a_content_lover_who_buys_less_is_not_at_risk():
    now = timezone.now()
    fan = MemberFactory(joined_at=now - 300 * DAY)
    # Bought often months ago, once lately; watches live streams and reads articles every day.
    ingest(purchases(fan, now=now, days_ago=[280.2, 250.2, 220.2, 190.2, 160.2, 130.2, 100.2, 60.2]))
    ingest(
        [
            event(fan, EventKind.INTERACTION, at=now - (d + 0.2) * DAY, sub_kind=InteractionKind.LIVE_WATCH)
            for d in range(10)
        ]
    )
    ingest(
        [
            event(fan, EventKind.INTERACTION, at=now - (d + 0.4) * DAY, sub_kind=InteractionKind.ARTICLE_READ)
            for d in range(3)
        ]
    )

    layers_recompute_full(now=now)

    score = MemberScore.objects.get(member=fan)
    assert score.lifecycle_stage == LifecycleStage.PAYING
    assert "inactive_days" not in score.churn_reasons
    assert score.churn_reasons.get("purchase_drop_pct", 0) >= 50  # the drop is reported…
    assert score.churn_risk < 40  # …but daily engagement keeps the risk low


def test_silent_needs_all_three_dimensions_quiet_for_90_days():
    now = timezone.now()
    old = now - 300 * DAY
    reads = MemberFactory(joined_at=old)  # no purchase for 100 days, but read an article 50 days ago
    campaign = MemberFactory(joined_at=old)  # no purchase, but checked in 60 days ago
    complained = MemberFactory(joined_at=old)  # no purchase or content, but complained 40 days ago
    quiet = MemberFactory(joined_at=old)
    for member in (reads, campaign, complained, quiet):
        ingest(purchases(member, now=now, days_ago=[100.2]))
    ingest([event(reads, EventKind.INTERACTION, at=now - 50.2 * DAY, sub_kind=InteractionKind.ARTICLE_READ)])
    ingest([event(campaign, EventKind.CHECK_IN, at=now - 60.2 * DAY)])
    ingest([event(complained, EventKind.COMPLAINT, at=now - 40.2 * DAY)])
    ingest([event(quiet, EventKind.GROUP_EXIT, at=now - 5.2 * DAY)])  # leaving a group is no sign of life

    layers_recompute_full(now=now)

    assert _stage(reads) == LifecycleStage.CHURNED
    assert _stage(campaign) == LifecycleStage.CHURNED
    assert _stage(complained) == LifecycleStage.CHURNED
    assert _stage(quiet) == LifecycleStage.SILENT


def test_stage_changes_are_recorded_once_with_their_date():
    now = timezone.now()
    member = MemberFactory(joined_at=now - 300 * DAY)
    ingest(purchases(member, now=now, days_ago=[1.2, 40.2]))

    layers_recompute_full(now=now)
    layers_recompute_full(now=now)
    assert StageTransition.objects.count() == 0  # the first stage is no change; nothing changed since

    later = now + 20 * DAY
    layers_recompute_full(now=later)
    layers_recompute_full(now=later)

    change = StageTransition.objects.get()
    assert (change.member_id, change.from_stage, change.to_stage) == (member.pk, "paying", "at_risk")
    assert change.at == later
    assert MemberScore.objects.get(member=member).stage_since == later


def test_churn_risk_reasons_are_readable_and_translatable():
    now = timezone.now()
    member = MemberFactory(joined_at=now - 300 * DAY)
    ingest(purchases(member, now=now, days_ago=[300.2, 250.2, 200.2, 150.2, 120.2, 21.2]))

    layers_recompute_full(now=now)

    score = MemberScore.objects.get(member=member)
    assert score.lifecycle_stage == LifecycleStage.AT_RISK
    assert score.churn_reasons["inactive_days"] == 21
    assert score.churn_reasons["purchase_drop_pct"] >= 50
    assert score.churn_risk >= 40
    with override("en"):
        text = churn_reasons_text(score.churn_reasons)
    assert text.startswith("no interaction for 21 days; purchase rate down ")
    assert churn_reasons_text({"inactive_days": 21, "purchase_drop_pct": 60, "points_expiring": True}) == (
        "no interaction for 21 days; purchase rate down 60%; points expiring"
    )


def test_automatic_tags_follow_behaviour():
    now = timezone.now()
    settings_row = LayerSettings.load()
    spender = MemberFactory(joined_at=now - 300 * DAY, birthday=timezone.localdate(now).replace(year=1990, day=1))
    viewer = MemberFactory(joined_at=now - 300 * DAY)
    ingest(purchases(spender, now=now, days_ago=[5.2, 50.2], amount=1500))
    ingest(
        [
            event(viewer, EventKind.INTERACTION, at=now - (d + 0.2) * DAY, sub_kind=InteractionKind.LIVE_WATCH)
            for d in range(settings_row.live_lover_min_watches)
        ]
    )

    layers_recompute_full(now=now)

    def tags(member):
        return set(
            MemberTag.objects.filter(member=member).values_list(
                "tag__automatic_rule__rule", "tag__automatic_rule__argument"
            )
        )

    assert tags(spender) == {(AutomaticTag.Rule.HIGH_SPENDER, ""), (AutomaticTag.Rule.BIRTHDAY_MONTH, "")}
    assert tags(viewer) == {(AutomaticTag.Rule.LIVE_LOVER, ""), (AutomaticTag.Rule.PREFERS, "live_watch")}

    # A month later the live streams are out of the period and the tags go.
    layers_recompute_full(now=now + 40 * DAY)
    assert (AutomaticTag.Rule.LIVE_LOVER, "") not in tags(viewer)


def test_daily_counts_are_snapshotted_for_the_charts():
    now = timezone.now()
    MemberFactory.create_batch(3, joined_at=now - 5 * DAY)

    layers_recompute_full(now=now)

    counts = {(s.dimension, s.value): s.members for s in LayerSnapshot.objects.filter(day=timezone.localdate(now))}
    assert counts == {("layer", "edge"): 3, ("stage", "new"): 3}


def test_an_incremental_run_updates_todays_counts_to_what_a_recount_gives():
    from collections import Counter

    from members.services.layers import layers_recompute_incremental

    now = timezone.now()
    people = MemberFactory.create_batch(8, joined_at=now - 300 * DAY)
    for days, member in zip([2.2, 20.2, 45.2, 100.2, 3.2, 5.2, 200.2, 1.2], people, strict=True):
        ingest(purchases(member, now=now, days_ago=[days]))
    layers_recompute_full(now=now)

    def counts() -> dict:
        snapshot = LayerSnapshot.objects.filter(day=timezone.localdate(now))
        return {(s.dimension, s.value): s.members for s in snapshot if s.members}

    def recount() -> dict:
        found = Counter()
        for layer, stage in MemberScore.objects.values_list("value_layer", "lifecycle_stage"):
            found[("layer", layer)] += 1
            found[("stage", stage)] += 1
        return dict(found)

    # Members change stage and layer; one joins.
    ingest(purchases(people[1], now=now, days_ago=[0.1, 0.2]) + purchases(people[3], now=now, days_ago=[0.1]))
    ingest([event(people[2], EventKind.CHECK_IN, at=now - 0.1 * DAY)])
    MemberFactory(joined_at=now - 2 * DAY)
    layers_recompute_incremental(now=now)
    assert counts() == recount()

    # A member deleted during the day leaves the counts at the next full run (the hourly runs
    # apply what they recompute; they do not count a million score rows again).
    people[4].delete()
    layers_recompute_full(now=now)
    assert counts() == recount()


def test_points_expiring_soon_gives_the_tag_and_a_churn_risk_reason():
    from tests.factories.loyalty import EarnFactory

    now = timezone.now()
    expiring = MemberFactory(joined_at=now - 300 * DAY)
    later = MemberFactory(joined_at=now - 300 * DAY)
    EarnFactory(member=expiring, amount=200, expires_at=now + 10 * DAY)
    EarnFactory(member=later, amount=200, expires_at=now + 200 * DAY)
    ingest(purchases(expiring, now=now, days_ago=[20.2]) + purchases(later, now=now, days_ago=[20.2]))

    layers_recompute_full(now=now)

    rule = AutomaticTag.objects.get(rule=AutomaticTag.Rule.POINTS_EXPIRING)
    assert set(MemberTag.objects.filter(tag=rule.tag).values_list("member_id", flat=True)) == {expiring.pk}
    with_points, without = MemberScore.objects.get(member=expiring), MemberScore.objects.get(member=later)
    assert with_points.churn_reasons.get("points_expiring") and "points_expiring" not in without.churn_reasons
    assert with_points.churn_risk == without.churn_risk + 10
