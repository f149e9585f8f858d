"""Segment rules: a JSON tree of AND/OR groups of conditions, validated and turned into a `Q`.

Pure: no database access, so tests hit it directly and the admin can validate a rule before
anything runs. The shape::

    {"op": "and", "rules": [
        {"field": "value_layer", "operator": "in", "value": ["high", "potential"]},
        {"op": "or", "rules": [
            {"field": "city", "operator": "eq", "value": "上海"},
            {"field": "event_count", "kind": "check_in", "days": 7, "operator": "gte", "value": 3}
        ]},
        {"field": "last_purchase", "operator": "not_within", "value": 60}
    ]}

Tiers: the `tier` condition (by tier code) appears when loyalty's MemberTier gives members a
`tier_status`. An empty group matches every member. `validate_rules` raises `SegmentRuleError` with the
path of the offending node (``rules[1].rules[0]``) and a message staff can act on.

Fields are declared in `FIELDS`; other apps add theirs with `register_field`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, GreaterThanOrEqual, LessThanOrEqual
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.models import Channel, EventKind, Gender, InteractionKind, MemberEvent, MemberTag
from members.models_layers import LifecycleStage, ValueLayer

MAX_DEPTH = 5
MAX_CONDITIONS = 50
MAX_DAYS = 3650
MAX_LIST = 1000


class SegmentRuleError(ValueError):
    def __init__(self, message: str, path: str = ""):
        self.message = f"{path}: {message}" if path else message
        self.path = path
        super().__init__(self.message)


# Operators per value type --------------------------------------------------------------------

CHOICE_OPERATORS = ("eq", "ne", "in", "not_in")
TEXT_OPERATORS = ("eq", "ne", "in", "not_in")
NUMBER_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
BOOL_OPERATORS = ("is",)
# "within N days" / "not within N days (or never)" on a datetime.
RECENCY_OPERATORS = ("within", "not_within")
TAG_OPERATORS = ("any", "all", "none")
CODE_OPERATORS = ("in", "not_in")
COUNT_OPERATORS = ("gte", "gt", "lte", "lt", "eq")

OPERATOR_LABELS = {
    "eq": gettext_lazy("is"),
    "ne": gettext_lazy("is not"),
    "in": gettext_lazy("is one of"),
    "not_in": gettext_lazy("is none of"),
    "gt": gettext_lazy("more than"),
    "gte": gettext_lazy("at least"),
    "lt": gettext_lazy("less than"),
    "lte": gettext_lazy("at most"),
    "between": gettext_lazy("between"),
    "is": gettext_lazy("is"),
    "within": gettext_lazy("within the last N days"),
    "not_within": gettext_lazy("not within the last N days (or never)"),
    "any": gettext_lazy("has any of"),
    "all": gettext_lazy("has all of"),
    "none": gettext_lazy("has none of"),
}


@dataclass(frozen=True)
class FieldSpec:
    label: Promise | str
    type: str  # choice, text, integer, number, bool, recency, tags, codes, events
    path: str = ""
    choices: Callable[[], list[tuple[str, str]]] | None = None
    minimum: float | None = None
    maximum: float | None = None
    operators: tuple[str, ...] = field(default=())

    def allowed_operators(self) -> tuple[str, ...]:
        if self.operators:
            return self.operators
        return {
            "choice": CHOICE_OPERATORS,
            "text": TEXT_OPERATORS,
            "integer": NUMBER_OPERATORS,
            "number": NUMBER_OPERATORS,
            "bool": BOOL_OPERATORS,
            "recency": RECENCY_OPERATORS,
            "tags": TAG_OPERATORS,
            "codes": CODE_OPERATORS,
            "events": COUNT_OPERATORS,
        }[self.type]


def _choices(enum) -> Callable[[], list[tuple[str, str]]]:
    return lambda: [(value, str(label)) for value, label in enum.choices]


FIELDS: dict[str, FieldSpec] = {
    # Member fields
    "city": FieldSpec(gettext_lazy("city"), "text", "city"),
    "channel": FieldSpec(gettext_lazy("channel"), "choice", "channel", _choices(Channel)),
    "gender": FieldSpec(gettext_lazy("gender"), "choice", "gender", _choices(Gender)),
    "birthday_month": FieldSpec(gettext_lazy("birthday month"), "integer", "birthday__month", minimum=1, maximum=12),
    "joined": FieldSpec(gettext_lazy("joined"), "recency", "joined_at"),
    "last_active": FieldSpec(gettext_lazy("last active"), "recency", "last_active_at"),
    "last_interaction": FieldSpec(gettext_lazy("last interaction"), "recency", "last_interaction_at"),
    "last_purchase": FieldSpec(gettext_lazy("last purchase"), "recency", "last_purchase_at"),
    "orders_count": FieldSpec(gettext_lazy("orders (all time)"), "integer", "orders_count", minimum=0),
    "total_spent": FieldSpec(gettext_lazy("total spent (yuan)"), "number", "total_spent"),
    "sms_opt_out": FieldSpec(gettext_lazy("no SMS"), "bool", "sms_opt_out"),
    "email_opt_out": FieldSpec(gettext_lazy("no e-mail"), "bool", "email_opt_out"),
    "wecom_opt_out": FieldSpec(gettext_lazy("no WeCom messages"), "bool", "wecom_opt_out"),
    # Computed scores (MemberScore); members not scored yet match none of these.
    "value_layer": FieldSpec(gettext_lazy("value layer"), "choice", "score__value_layer", _choices(ValueLayer)),
    "lifecycle_stage": FieldSpec(
        gettext_lazy("lifecycle stage"), "choice", "score__lifecycle_stage", _choices(LifecycleStage)
    ),
    "r_score": FieldSpec(gettext_lazy("R score"), "integer", "score__r_score", minimum=1, maximum=10),
    "f_score": FieldSpec(gettext_lazy("F score"), "integer", "score__f_score", minimum=1, maximum=10),
    "m_score": FieldSpec(gettext_lazy("M score"), "integer", "score__m_score", minimum=1, maximum=10),
    "rfm_score": FieldSpec(gettext_lazy("RFM score"), "integer", "score__rfm_score", minimum=3, maximum=30),
    "recency_days": FieldSpec(gettext_lazy("recency (days)"), "integer", "score__recency_days", minimum=0),
    "frequency": FieldSpec(gettext_lazy("frequency (orders in window)"), "integer", "score__frequency", minimum=0),
    "monetary": FieldSpec(gettext_lazy("monetary (yuan in window)"), "number", "score__monetary"),
    "p_alive": FieldSpec(gettext_lazy("P(alive)"), "number", "score__p_alive", minimum=0, maximum=1),
    "expected_purchases_90d": FieldSpec(
        gettext_lazy("expected purchases, 90 days"), "number", "score__expected_purchases_90d", minimum=0
    ),
    "churn_risk": FieldSpec(gettext_lazy("churn risk"), "integer", "score__churn_risk", minimum=0, maximum=100),
    # Relations
    "tags": FieldSpec(gettext_lazy("tags"), "tags"),
    "event_count": FieldSpec(gettext_lazy("events in the last N days"), "events"),
}


def register_field(name: str, spec: FieldSpec) -> None:
    """Let another app offer a condition without editing this module."""
    FIELDS[name] = spec


def _register_tier_field() -> None:
    """The member's tier, by tier code, when the loyalty app keeps one (MemberTier → tier_status)."""
    from django.core.exceptions import FieldDoesNotExist

    from members.models import Member

    try:
        Member._meta.get_field("tier_status")
    except FieldDoesNotExist:
        return
    FIELDS.setdefault("tier", FieldSpec(gettext_lazy("tier"), "codes", "tier_status__tier__code"))


_register_tier_field()


# Validation -----------------------------------------------------------------------------------


def validate_rules(rules) -> dict:
    """Check a rule tree and return it normalized (values cast to their types); raise SegmentRuleError."""
    if rules in (None, {}, ""):
        return {"op": "and", "rules": []}
    counter = {"conditions": 0}
    return _validate_node(rules, path="", depth=1, counter=counter)


def _validate_node(node, *, path: str, depth: int, counter: dict) -> dict:
    if not isinstance(node, dict):
        raise SegmentRuleError(_("Each rule must be an object."), path)
    if "field" in node:
        counter["conditions"] += 1
        if counter["conditions"] > MAX_CONDITIONS:
            raise SegmentRuleError(_("A segment has at most %(max)d conditions.") % {"max": MAX_CONDITIONS}, path)
        return _validate_condition(node, path=path)
    op = node.get("op")
    if op not in ("and", "or"):
        raise SegmentRuleError(_('A group must have "op": "and" or "or"; got %(op)r.') % {"op": op}, path)
    if depth > MAX_DEPTH:
        raise SegmentRuleError(_("Groups nest at most %(max)d deep.") % {"max": MAX_DEPTH}, path)
    children = node.get("rules", [])
    if not isinstance(children, list):
        raise SegmentRuleError(_('A group\'s "rules" must be a list.'), path)
    prefix = f"{path}." if path else ""
    return {
        "op": op,
        "rules": [
            _validate_node(child, path=f"{prefix}rules[{index}]", depth=depth + 1, counter=counter)
            for index, child in enumerate(children)
        ],
    }


def _validate_condition(node: dict, *, path: str) -> dict:
    name = node.get("field")
    spec = FIELDS.get(name)
    if spec is None:
        raise SegmentRuleError(
            _("Unknown field %(field)r; use one of: %(fields)s.")
            % {"field": name, "fields": ", ".join(sorted(FIELDS))},
            path,
        )
    operator = node.get("operator")
    allowed = spec.allowed_operators()
    if operator not in allowed:
        raise SegmentRuleError(
            _("Operator %(op)r does not apply to %(field)s; use one of: %(ops)s.")
            % {"op": operator, "field": name, "ops": ", ".join(allowed)},
            path,
        )
    value = node.get("value")
    clean = {"field": name, "operator": operator}
    if spec.type == "events":
        clean.update(_validate_event_options(node, path=path))
    clean["value"] = _validate_value(spec, name, operator, value, path=path)
    return clean


def _validate_event_options(node: dict, *, path: str) -> dict:
    kind = node.get("kind")
    if kind not in EventKind.values:
        raise SegmentRuleError(
            _("Event kind %(kind)r is unknown; use one of: %(kinds)s.")
            % {"kind": kind, "kinds": ", ".join(EventKind.values)},
            path,
        )
    sub_kind = node.get("sub_kind") or ""
    if sub_kind and (kind != EventKind.INTERACTION or sub_kind not in InteractionKind.values):
        raise SegmentRuleError(
            _("A sub-kind applies to interactions only, one of: %(kinds)s.")
            % {"kinds": ", ".join(InteractionKind.values)},
            path,
        )
    if node.get("days") in (None, ""):
        raise SegmentRuleError(_('An event condition needs "days": how many days back to count.'), path)
    days = _as_int(node.get("days"), path=path, what=_("Days"))
    if not 1 <= days <= MAX_DAYS:
        raise SegmentRuleError(_("Days must be between 1 and %(max)d.") % {"max": MAX_DAYS}, path)
    return {"kind": kind, "sub_kind": sub_kind, "days": days}


def _as_int(value, *, path: str, what) -> int:
    if isinstance(value, bool) or value is None:
        raise SegmentRuleError(_("%(what)s must be a whole number.") % {"what": what}, path)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise SegmentRuleError(_("%(what)s must be a whole number.") % {"what": what}, path) from None
    if number != number.to_integral_value():
        raise SegmentRuleError(_("%(what)s must be a whole number.") % {"what": what}, path)
    return int(number)


def _as_number(value, *, path: str, spec: FieldSpec, name: str):
    if spec.type == "integer":
        number = _as_int(value, path=path, what=_("The value"))
    else:
        if isinstance(value, bool) or value is None:
            raise SegmentRuleError(_("The value must be a number."), path)
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            raise SegmentRuleError(_("The value must be a number."), path) from None
        if not number.is_finite():
            raise SegmentRuleError(_("The value must be a number."), path)
    if (spec.minimum is not None and number < spec.minimum) or (spec.maximum is not None and number > spec.maximum):
        raise SegmentRuleError(
            _("%(field)s must be between %(low)s and %(high)s.")
            % {
                "field": name,
                "low": spec.minimum if spec.minimum is not None else "-∞",
                "high": spec.maximum if spec.maximum is not None else "∞",
            },
            path,
        )
    return number if spec.type == "integer" else str(number)


def _validate_value(spec: FieldSpec, name: str, operator: str, value, *, path: str):
    if spec.type in ("choice", "text"):
        allowed = [choice for choice, _label in spec.choices()] if spec.choices else None
        if operator in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise SegmentRuleError(_("Pick at least one value."), path)
            if len(value) > MAX_LIST:
                raise SegmentRuleError(_("At most %(max)d values.") % {"max": MAX_LIST}, path)
            values = [str(v) for v in value]
        else:
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise SegmentRuleError(_("The value must be text."), path)
            values = [str(value)]
        if allowed is not None:
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise SegmentRuleError(
                    _("%(values)s is not a %(field)s; use one of: %(allowed)s.")
                    % {"values": ", ".join(unknown), "field": name, "allowed": ", ".join(allowed)},
                    path,
                )
        return values if operator in ("in", "not_in") else values[0]
    if spec.type in ("integer", "number"):
        if operator == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise SegmentRuleError(_('"between" takes two values: [low, high].'), path)
            low, high = (_as_number(v, path=path, spec=spec, name=name) for v in value)
            if Decimal(str(low)) > Decimal(str(high)):
                raise SegmentRuleError(_("The low value is above the high one."), path)
            return [low, high]
        return _as_number(value, path=path, spec=spec, name=name)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise SegmentRuleError(_("The value must be true or false."), path)
        return value
    if spec.type == "recency":
        days = _as_int(value, path=path, what=_("Days"))
        if not 0 <= days <= MAX_DAYS:
            raise SegmentRuleError(_("Days must be between 0 and %(max)d.") % {"max": MAX_DAYS}, path)
        return days
    if spec.type == "tags":
        if not isinstance(value, list) or not value:
            raise SegmentRuleError(_("Pick at least one tag."), path)
        return [_as_int(v, path=path, what=_("A tag id")) for v in value][:MAX_LIST]
    if spec.type == "codes":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise SegmentRuleError(_("Pick at least one value."), path)
        return [v.strip() for v in value][:MAX_LIST]
    if spec.type == "events":
        count = _as_int(value, path=path, what=_("The number of events"))
        if count < 0:
            raise SegmentRuleError(_("The number of events cannot be negative."), path)
        return count
    raise SegmentRuleError(_("Unsupported field type."), path)  # pragma: no cover


# Translation to Q -----------------------------------------------------------------------------


def rules_to_q(rules, *, now: datetime) -> Q:
    """The `Q` over Member that selects the segment's members (validates first)."""
    return _node_q(validate_rules(rules), now=now)


def _node_q(node: dict, *, now: datetime) -> Q:
    if "field" in node:
        return _condition_q(node, now=now)
    children = [_node_q(child, now=now) for child in node["rules"]]
    if not children:
        return Q()
    combined = children[0]
    for child in children[1:]:
        combined = combined & child if node["op"] == "and" else combined | child
    return combined


_NUMBER_LOOKUPS = {"eq": "exact", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}


def _nothing() -> Q:
    return Q(pk__in=[])


def _condition_q(node: dict, *, now: datetime) -> Q:
    spec = FIELDS[node["field"]]
    operator, value = node["operator"], node["value"]
    if spec.type in ("choice", "text"):
        if operator == "eq":
            return Q(**{spec.path: value})
        if operator == "ne":
            return ~Q(**{spec.path: value})
        if operator == "in":
            return Q(**{f"{spec.path}__in": value})
        return ~Q(**{f"{spec.path}__in": value})
    if spec.type in ("integer", "number"):
        if operator == "between":
            return Q(**{f"{spec.path}__gte": value[0], f"{spec.path}__lte": value[1]})
        if operator == "ne":
            return ~Q(**{spec.path: value})
        return Q(**{f"{spec.path}__{_NUMBER_LOOKUPS[operator]}": value})
    if spec.type == "bool":
        return Q(**{spec.path: value})
    if spec.type == "recency":
        cut = now - timedelta(days=value)
        if operator == "within":
            return Q(**{f"{spec.path}__gte": cut})
        return Q(**{f"{spec.path}__lt": cut}) | Q(**{f"{spec.path}__isnull": True})
    if spec.type == "codes":
        # Members with no row on the other side (no tier yet) are "none of" any code.
        return Q(**{f"{spec.path}__in": value}) if operator == "in" else ~Q(**{f"{spec.path}__in": value})
    if spec.type == "tags":
        return _tags_q(operator, value)
    if spec.type == "events":
        return _events_q(node, now=now)
    raise SegmentRuleError(_("Unsupported field type."))  # pragma: no cover


def _tags_q(operator: str, tag_ids: list[int]) -> Q:
    # Semi-joins on the (member, tag) unique index; a join would repeat members.
    def has(ids) -> Exists:
        return Exists(MemberTag.objects.filter(member=OuterRef("pk"), tag_id__in=ids))

    if operator == "any":
        return Q(has(tag_ids))
    if operator == "none":
        return ~Q(has(tag_ids))
    combined = Q()
    for tag_id in sorted(set(tag_ids)):
        combined &= Q(has([tag_id]))
    return combined


# Kinds whose latest event is a rollup on Member (kept by ingest): "at least one in N days" and
# "none in N days" read the member row instead of probing the behaviour log per member.
_LAST_EVENT_COLUMNS = {EventKind.PURCHASE: "last_purchase_at", EventKind.CHECK_IN: "last_check_in_at"}


def _rollups_built() -> bool:
    """last_check_in_at is filled by a rebuild of the windowed figures (after migration 0011)."""
    from members.models_layers import EventWindows

    return EventWindows.objects.filter(ready=True).exists()


def _events_q(node: dict, *, now: datetime) -> Q:
    """ "checked in at least 3 times in 7 days", "no purchase in 60 days" (= purchases eq 0)."""
    cut = now - timedelta(days=node["days"])
    events = MemberEvent.objects.filter(member=OuterRef("pk"), kind=node["kind"], occurred_at__gte=cut)
    if node["sub_kind"]:
        events = events.filter(sub_kind=node["sub_kind"])
    last = None if node["sub_kind"] else _LAST_EVENT_COLUMNS.get(node["kind"])
    if last == "last_check_in_at" and not _rollups_built():
        last = None
    operator, count = node["operator"], node["value"]
    # Normalize to "at least n" or "at most n" so the common cases become EXISTS / NOT EXISTS.
    if operator == "gt":
        operator, count = "gte", count + 1
    elif operator == "lt":
        operator, count = "lte", count - 1
    some = Q(**{f"{last}__gte": cut}) if last else Q(Exists(events))
    none = (Q(**{f"{last}__lt": cut}) | Q(**{f"{last}__isnull": True})) if last else ~Q(Exists(events))
    if operator == "gte":
        if count <= 0:
            return Q()
        if count == 1:
            return some
    if operator == "lte":
        if count < 0:
            return _nothing()
        if count == 0:
            return none
    if operator == "eq" and count == 0:
        return none
    counted = Coalesce(
        Subquery(
            events.order_by().values("member").annotate(n=Count("*")).values("n")[:1], output_field=IntegerField()
        ),
        Value(0),
    )
    lookup = {"gte": GreaterThanOrEqual, "lte": LessThanOrEqual, "eq": Exact}[operator]
    return Q(lookup(counted, count))


# Description, for the admin list ---------------------------------------------------------------


def describe_rules(rules) -> str:
    """A one-line reading of the rules, e.g. 'value layer is one of high, potential AND (…)'."""
    try:
        node = validate_rules(rules)
    except SegmentRuleError as error:
        return error.message
    return _describe(node, top=True) or _("all members")


def _describe(node: dict, *, top: bool = False) -> str:
    if "field" in node:
        spec = FIELDS[node["field"]]
        value = node["value"]
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if spec.type == "events":
            what = node["kind"] + (f"/{node['sub_kind']}" if node["sub_kind"] else "")
            return _("%(what)s events in %(days)d days %(op)s %(value)s") % {
                "what": what,
                "days": node["days"],
                "op": OPERATOR_LABELS[node["operator"]],
                "value": value,
            }
        return f"{spec.label} {OPERATOR_LABELS[node['operator']]} {value}"
    parts = [_describe(child) for child in node["rules"]]
    joined = f" {node['op'].upper()} ".join(part for part in parts if part)
    return joined if top or len(parts) < 2 else f"({joined})"


def editor_schema() -> dict:
    """What the admin's rule editor offers: fields with their types, operators and choices."""
    return {
        "fields": [
            {
                "name": name,
                "label": str(spec.label),
                "type": spec.type,
                "operators": [{"value": op, "label": str(OPERATOR_LABELS[op])} for op in spec.allowed_operators()],
                "choices": [{"value": v, "label": label} for v, label in spec.choices()] if spec.choices else None,
            }
            for name, spec in FIELDS.items()
        ],
        "event_kinds": [{"value": v, "label": str(label)} for v, label in EventKind.choices],
        "interaction_kinds": [{"value": v, "label": str(label)} for v, label in InteractionKind.choices],
    }
