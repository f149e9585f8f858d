"""Segment rules: validation with clear errors, and the members each rule selects."""

from datetime import timedelta

import pytest
from django.utils import timezone

from members.models import Channel, EventKind, InteractionKind, Member, MemberEvent, MemberTag
from members.models_layers import MemberScore
from members.segment_rules import SegmentRuleError, describe_rules, rules_to_q, validate_rules
from members.services.windows import event_windows_advance
from tests.factories import MemberFactory, TagFactory
from tests.factories.layers import event, ingest, purchases

DAY = timedelta(days=1)


def cond(field, operator, value, **extra):
    return {"field": field, "operator": operator, "value": value, **extra}


# Validation (no database) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"op": "xor", "rules": []}, 'A group must have "op": "and" or "or"'),
        ({"op": "and", "rules": [cond("shoe_size", "eq", 42)]}, "rules[0]: Unknown field 'shoe_size'"),
        ({"op": "and", "rules": [cond("rfm_score", "in", [3])]}, "rules[0]: Operator 'in' does not apply to rfm_score"),
        ({"op": "and", "rules": [cond("value_layer", "eq", "vip")]}, "rules[0]: vip is not a value_layer"),
        (
            {"op": "or", "rules": [{"op": "and", "rules": [cond("r_score", "gte", "x")]}]},
            "rules[0].rules[0]: The value must be a whole number.",
        ),
        (
            {"op": "and", "rules": [cond("event_count", "gte", 3, kind="check_in")]},
            'rules[0]: An event condition needs "days"',
        ),
        ({"op": "and", "rules": [cond("event_count", "gte", 3, kind="dance", days=7)]}, "Event kind 'dance'"),
        ({"op": "and", "rules": [cond("p_alive", "gt", 2)]}, "p_alive must be between 0 and 1"),
        ({"op": "and", "rules": [cond("rfm_score", "between", [9, 4])]}, "The low value is above the high one."),
        ({"op": "and", "rules": [cond("tags", "any", [])]}, "Pick at least one tag."),
        ({"op": "and", "rules": "city=上海"}, 'A group\'s "rules" must be a list.'),
    ],
)
def test_invalid_rules_are_rejected_with_the_place_and_the_reason(rules, message):
    with pytest.raises(SegmentRuleError) as caught:
        validate_rules(rules)
    assert message in caught.value.message


def test_groups_nest_to_a_limit():
    rules = {"op": "and", "rules": []}
    for _ in range(6):
        rules = {"op": "or", "rules": [rules]}
    with pytest.raises(SegmentRuleError, match="nest at most"):
        validate_rules(rules)


def test_validation_normalizes_values_and_empty_rules_mean_everyone():
    assert validate_rules(None) == {"op": "and", "rules": []}
    clean = validate_rules(
        {"op": "and", "rules": [cond("r_score", "gte", "4"), cond("monetary", "between", [10, "99.5"])]}
    )
    assert clean["rules"][0]["value"] == 4
    assert clean["rules"][1]["value"] == ["10", "99.5"]
    assert describe_rules(clean) == "R score at least 4 AND monetary (yuan in window) between 10, 99.5"


# Translation to members (database) --------------------------------------------------------------


def _select(rules, now) -> set[int]:
    return set(Member.objects.filter(rules_to_q(rules, now=now)).values_list("pk", flat=True))


@pytest.mark.django_db
def test_member_fields_scores_and_or_groups():
    now = timezone.now()
    shanghai = MemberFactory(city="上海", channel=Channel.WECOM)
    beijing = MemberFactory(city="北京", channel=Channel.APP)
    hangzhou = MemberFactory(city="杭州", channel=Channel.WECOM)
    MemberScore.objects.create(member=shanghai, value_layer="high", lifecycle_stage="paying", rfm_score=14, p_alive=0.9)
    MemberScore.objects.create(member=beijing, value_layer="edge", lifecycle_stage="at_risk", rfm_score=5, p_alive=0.2)

    assert _select({"op": "and", "rules": [cond("channel", "eq", "wecom")]}, now) == {shanghai.pk, hangzhou.pk}
    assert _select({"op": "and", "rules": [cond("value_layer", "in", ["high", "potential"])]}, now) == {shanghai.pk}
    assert _select({"op": "and", "rules": [cond("p_alive", "lt", 0.5)]}, now) == {beijing.pk}
    either = {"op": "or", "rules": [cond("city", "eq", "北京"), cond("rfm_score", "gte", 12)]}
    assert _select(either, now) == {shanghai.pk, beijing.pk}
    nested = {
        "op": "and",
        "rules": [
            cond("channel", "eq", "wecom"),
            {"op": "or", "rules": [cond("city", "eq", "杭州"), cond("lifecycle_stage", "eq", "paying")]},
        ],
    }
    assert _select(nested, now) == {shanghai.pk, hangzhou.pk}
    assert _select({"op": "and", "rules": [cond("city", "not_in", ["上海", "北京"])]}, now) == {hangzhou.pk}
    assert _select({"op": "and", "rules": []}, now) == {shanghai.pk, beijing.pk, hangzhou.pk}


@pytest.mark.django_db
def test_event_counts_in_the_last_n_days():
    now = timezone.now()
    regular = MemberFactory()
    twice = MemberFactory()
    lapsed_buyer = MemberFactory()
    recent_buyer = MemberFactory()
    ingest([event(regular, EventKind.CHECK_IN, at=now - (d + 0.2) * DAY) for d in range(4)])
    ingest(
        [event(twice, EventKind.CHECK_IN, at=now - (d + 0.2) * DAY) for d in (1, 2)]
        + [event(twice, EventKind.CHECK_IN, at=now - 10.2 * DAY)]
    )  # outside the 7 days
    ingest(purchases(lapsed_buyer, now=now, days_ago=[75.2]))
    ingest(purchases(recent_buyer, now=now, days_ago=[5.2]))
    ingest([event(recent_buyer, EventKind.INTERACTION, at=now - DAY, sub_kind=InteractionKind.LIVE_WATCH)])

    checked_in_3_in_7 = {"op": "and", "rules": [cond("event_count", "gte", 3, kind="check_in", days=7)]}
    assert _select(checked_in_3_in_7, now) == {regular.pk}
    at_most_2 = {"op": "and", "rules": [cond("event_count", "lte", 2, kind="check_in", days=7)]}
    assert _select(at_most_2, now) == {twice.pk, lapsed_buyer.pk, recent_buyer.pk}
    no_purchase_in_60 = {"op": "and", "rules": [cond("event_count", "eq", 0, kind="purchase", days=60)]}
    assert _select(no_purchase_in_60, now) == {regular.pk, twice.pk, lapsed_buyer.pk}
    # The same question through the rollup, restricted to members who ever bought:
    lapsed = {"op": "and", "rules": [cond("last_purchase", "not_within", 60), cond("orders_count", "gt", 0)]}
    assert _select(lapsed, now) == {lapsed_buyer.pk}
    watched = {"op": "and", "rules": [cond("event_count", "gt", 0, kind="interaction", sub_kind="live_watch", days=7)]}
    assert _select(watched, now) == {recent_buyer.pk}


@pytest.mark.django_db
def test_any_or_no_check_in_or_purchase_in_n_days_read_the_rollups_and_agree_with_the_log():
    """ "At least one" / "none" of a kind with a last-event rollup read the member row; the answer
    is the log's, also for events ingested late and out of order."""
    now = timezone.now()
    people = MemberFactory.create_batch(6)
    days = {0: [1.2], 1: [29.2], 2: [31.2], 3: [], 4: [40.2, 3.2], 5: [2.2, 95.2]}
    for index, member in enumerate(people):
        # Newest first, so the late (older) events arrive after the rollup already holds a later one.
        ingest([event(member, EventKind.CHECK_IN, at=now - d * DAY) for d in sorted(days[index])])
        ingest(purchases(member, now=now, days_ago=sorted(days[index], reverse=True)))
    # Other activity lately, which the check-in and purchase answers must not take for theirs.
    ingest(event(m, EventKind.INTERACTION, at=now - 0.5 * DAY, sub_kind=InteractionKind.LIKE) for m in people[2:4])

    def from_log(kind, within):
        cut = now - within * DAY
        return {m.pk for m in people if MemberEvent.objects.filter(member=m, kind=kind, occurred_at__gte=cut).exists()}

    everyone = {m.pk for m in people}
    rule = {"op": "and", "rules": [cond("event_count", "gt", 0, kind="check_in", days=30)]}

    def condition_sql() -> str:
        return str(Member.objects.filter(rules_to_q(rule, now=now)).values("pk").query).split("WHERE", 1)[1]

    # Before the windowed figures (and last_check_in_at with them) were ever built: the log.
    assert "last_check_in_at" not in condition_sql()
    assert _select(rule, now) == from_log(EventKind.CHECK_IN, 30)
    event_windows_advance(now=now)
    assert "last_check_in_at" in condition_sql()
    for kind in (EventKind.CHECK_IN, EventKind.PURCHASE):
        for within in (2, 30, 90):
            some = {"op": "and", "rules": [cond("event_count", "gte", 1, kind=kind, days=within)]}
            none = {"op": "and", "rules": [cond("event_count", "eq", 0, kind=kind, days=within)]}
            assert _select(some, now) == from_log(kind, within)
            assert _select(none, now) == everyone - from_log(kind, within)
    # Check-ins ingested after the rebuild keep the rollup current.
    ingest([event(people[3], EventKind.CHECK_IN, at=now - 0.3 * DAY)])
    today = {"op": "and", "rules": [cond("event_count", "gte", 1, kind="check_in", days=1)]}
    assert people[3].pk in _select(today, now)


@pytest.mark.django_db
def test_tag_conditions():
    a, b, c = MemberFactory.create_batch(3)
    vip, wecom = TagFactory(name="vip"), TagFactory(name="wecom")
    MemberTag.objects.create(member=a, tag=vip)
    MemberTag.objects.create(member=a, tag=wecom)
    MemberTag.objects.create(member=b, tag=vip)
    now = timezone.now()

    assert _select({"op": "and", "rules": [cond("tags", "any", [vip.pk, wecom.pk])]}, now) == {a.pk, b.pk}
    assert _select({"op": "and", "rules": [cond("tags", "all", [vip.pk, wecom.pk])]}, now) == {a.pk}
    assert _select({"op": "and", "rules": [cond("tags", "none", [vip.pk])]}, now) == {c.pk}


@pytest.mark.django_db
def test_tier_condition_by_tier_code():
    from loyalty.models import MemberTier, Tier

    now = timezone.now()
    silver = Tier.objects.create(code="seg-silver", name="白银", rank=91)
    gold = Tier.objects.create(code="seg-gold", name="黄金", rank=92)
    a, b, untiered = MemberFactory.create_batch(3)
    MemberTier.objects.create(member=a, tier=silver, since=now)
    MemberTier.objects.create(member=b, tier=gold, since=now)

    assert _select({"op": "and", "rules": [cond("tier", "in", ["seg-gold"])]}, now) == {b.pk}
    assert _select({"op": "and", "rules": [cond("tier", "not_in", ["seg-gold"])]}, now) == {a.pk, untiered.pk}
    with pytest.raises(SegmentRuleError, match="Pick at least one value"):
        validate_rules({"op": "and", "rules": [cond("tier", "in", [])]})
