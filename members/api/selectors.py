"""Read queries of the member endpoints.

The member read shows what the other apps know of a member: points (loyalty), value layer and
lifecycle stage (segmentation), tier and badges. Each is joined only where that app has it in
this version of the code, so the endpoint keeps its documented shape (null or empty) until then.
"""

import functools
import json
from datetime import UTC, datetime
from types import SimpleNamespace

from django.core.exceptions import FieldDoesNotExist
from django.db import connection
from django.db.models import F, QuerySet
from django.utils import timezone

from members.models import Member


def _has_relation(name: str) -> bool:
    try:
        Member._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def member_optional_relations() -> list[str]:
    """The one-to-one rows of other apps that a member read joins, where they exist."""
    return [name for name in ("points_account", "score") if _has_relation(name)]


MEMBER_READ_FIELDS = (
    "id", "external_id", "name", "phone", "email", "gender", "birthday", "city", "channel", "joined_at",
    "sms_opt_out", "email_opt_out", "wecom_opt_out", "created_at", "updated_at", "last_active_at",
    "last_interaction_at", "last_purchase_at", "orders_count", "total_spent",
)  # fmt: skip
# The columns of other apps' rows that a member read shows; fewer columns, cheaper query.
RELATED_READ_FIELDS = {
    "points_account": ("balance", "lifetime_earned", "lifetime_redeemed", "lifetime_expired"),
    "score": ("value_layer", "lifecycle_stage"),
}


@functools.cache
def _member_read_sql() -> tuple[str, tuple[str, ...], tuple, tuple, bool]:
    """The member read as one SQL statement, built once per process from the models' metadata.

    What `Member.objects.select_related(*relations).only(...)` would run, without the ORM:
    compiling that queryset and building three model instances is most of the CPU of a member
    read, the API's hottest path. tests/api check that both give the same response.
    Returns the SQL, the member columns, (relation, its columns) of each joined row, the
    parameters of the badges column, and whether there is one.
    """
    quote = connection.ops.quote_name
    columns = [f"m.{quote(Member._meta.get_field(name).column)}" for name in MEMBER_READ_FIELDS]
    joins, related = [], []
    for index, relation in enumerate(member_optional_relations()):
        field = Member._meta.get_field(relation)
        model, alias = field.related_model, f"r{index}"
        joins.append(f"LEFT JOIN {quote(model._meta.db_table)} {alias} ON {alias}.{quote(field.field.column)} = m.id")
        names = RELATED_READ_FIELDS[relation]
        # The first column tells a missing row (NULL) from a present one.
        columns += [f"{alias}.{quote(field.field.column)}"] + [
            f"{alias}.{quote(model._meta.get_field(name).column)}" for name in names
        ]
        related.append((relation, names))
    if _has_relation("tier_status"):
        # The member's tier (loyalty): its MemberTier row and that row's Tier.
        field = Member._meta.get_field("tier_status")
        status_model = field.related_model
        tier_field = status_model._meta.get_field("tier")
        tier_model = tier_field.related_model
        joins.append(
            f"LEFT JOIN {quote(status_model._meta.db_table)} ts ON ts.{quote(field.field.column)} = m.id "
            f"LEFT JOIN {quote(tier_model._meta.db_table)} tt ON tt.id = ts.{quote(tier_field.column)}"
        )
        columns += [f"ts.{quote(field.field.column)}", "tt.code", "tt.name", "ts.since", "ts.valid_until"]
        related.append(("tier_status", ("code", "name", "since", "valid_until")))
    badges = _badges_column()
    slots: tuple = ()
    if badges is not None:
        column, slots = badges
        columns.append(column)
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(Member._meta.db_table)} m {' '.join(joins)} "
        f"WHERE m.{quote(Member._meta.get_field('external_id').column)} = %s"
    )
    return sql, MEMBER_READ_FIELDS, tuple(related), slots, badges is not None


def _badges_column() -> tuple[str, tuple] | None:
    """The badges held now as one JSON column of the member read: loyalty's own query (see
    _member_badges_sql) as a correlated subquery on m.id. None when loyalty has no badges."""
    try:
        sql, slots = _member_badges_sql()
    except ImportError:  # pragma: no cover - a loyalty without badges
        return None
    pieces = sql.split("%s")
    if len(pieces) != len(slots) + 1:  # pragma: no cover - an unexpected literal %s
        return None
    inner, params = [pieces[0]], []
    for slot, piece in zip(slots, pieces[1:], strict=True):
        if slot == "member":
            inner.append("m.id")
        else:
            inner.append("%s")
            params.append(slot)
        inner.append(piece)
    row = "b.b_code, b.b_name, b.b_kind, b.b_awarded, b.b_expires"
    if connection.vendor == "postgresql":
        aggregate = f"json_agg(json_build_array({row}))"
    else:
        aggregate = f"json_group_array(json_array({row}))"
    return f"(SELECT {aggregate} FROM ({''.join(inner)}) b)", tuple(params)


def member_read(*, external_id: str) -> SimpleNamespace | None:
    """The member with this partner id, with its points account, score and tier where they exist.

    Returns a plain object with the member's fields, and `points_account` / `score` /
    `tier_status` attributes holding their rows' fields (or None), or None when there is no
    such member.
    """
    sql, names, related, slots, has_badges = _member_read_sql()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [now if slot == "now" else slot for slot in slots]
    with _prepared_cursor() as cursor:
        cursor.execute(sql, [*params, external_id])
        row = cursor.fetchone()
    if row is None:
        return None
    member = SimpleNamespace(**_aware(dict(zip(names, row, strict=False))))
    position = len(names)
    for relation, relation_names in related:
        present = row[position] is not None
        chunk = row[position + 1 : position + 1 + len(relation_names)]
        values = _aware(dict(zip(relation_names, chunk, strict=True)))
        setattr(member, relation, SimpleNamespace(**values) if present else None)
        position += 1 + len(relation_names)
    member.badges_held = _badges(row[position]) if has_badges else None
    return member


def _prepared_cursor():
    """A cursor whose statements PostgreSQL parses and plans once per connection.

    Django binds parameters on the client, so PostgreSQL plans the member read (five joins and
    the badges subquery) on every request: planning cost five times the execution. A statement
    prepared on the connection (psycopg keeps it, CONN_MAX_AGE keeps the connection) skips that.
    Otherwise the same as `connection.cursor()`: health check, query logging, error wrapping.
    A transaction-pooling pgbouncer in front of PostgreSQL would need its prepared-statement
    support (max_prepared_statements) for this.
    """
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = _PreparingCursor(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


try:
    from psycopg import Cursor as _ServerBindingCursor
except ImportError:  # pragma: no cover - SQLite-only installs
    _ServerBindingCursor = object


class _PreparingCursor(_ServerBindingCursor):
    """psycopg's server-side binding cursor, preparing every statement it runs."""

    def execute(self, query, params=None, *, prepare=True, binary=None):
        return super().execute(query, params, prepare=prepare, binary=binary)


def _badges(value) -> list[SimpleNamespace]:
    """The JSON column of badges as objects shaped like MemberBadge rows."""
    if isinstance(value, str):
        value = json.loads(value)
    held = []
    for code, name, kind, awarded_at, expires_at in value or ():
        moments = {"awarded_at": _moment(awarded_at), "expires_at": _moment(expires_at)}
        held.append(SimpleNamespace(badge=SimpleNamespace(code=code, name=name, kind=kind), **_aware(moments)))
    return held


def _moment(value) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _aware(values: dict) -> dict:
    """PostgreSQL returns aware datetimes; SQLite returns naive ones, stored in UTC."""
    for name, value in values.items():
        if isinstance(value, datetime) and timezone.is_naive(value):
            values[name] = timezone.make_aware(value, UTC)
    return values


def member_list(*, filters: dict) -> QuerySet[Member]:
    """Members matching the API's list filters; every filter maps to an index of Member."""
    queryset = Member.objects.filter(external_id__isnull=False)
    if "channel" in filters:
        queryset = queryset.filter(channel=filters["channel"])
    if "city" in filters:
        queryset = queryset.filter(city=filters["city"])
    if "joined_after" in filters:
        queryset = queryset.filter(joined_at__gte=filters["joined_after"])
    if "joined_before" in filters:
        queryset = queryset.filter(joined_at__lt=filters["joined_before"])
    if "active_after" in filters:
        queryset = queryset.filter(last_active_at__gte=filters["active_after"])
    if "external_id" in filters:
        queryset = queryset.filter(external_id__in=filters["external_id"])
    if "value_layer" in filters and _has_relation("score"):
        queryset = queryset.filter(score__value_layer=filters["value_layer"])
    if "lifecycle_stage" in filters and _has_relation("score"):
        queryset = queryset.filter(score__lifecycle_stage=filters["lifecycle_stage"])
    return queryset


_SENTINEL_MEMBER = -987_654_321
_SENTINEL_NOW = datetime(1901, 1, 1, tzinfo=UTC)


@functools.cache
def _member_badges_sql() -> tuple[str, tuple]:
    """loyalty's "badges held now" query for one member, compiled once per process.

    Built by the ORM from loyalty.selectors.member_badges_current (so the rule of what is held
    stays there) with sentinel values, whose places in the parameters are then filled per call.
    """
    from loyalty.selectors import member_badges_current

    queryset = (
        member_badges_current(now=_SENTINEL_NOW)
        .filter(member_id=_SENTINEL_MEMBER)
        .order_by("awarded_at", "id")
        # Named columns, so that the member read can select from it as a derived table.
        .values(
            b_code=F("badge__code"),
            b_name=F("badge__name"),
            b_kind=F("badge__kind"),
            b_awarded=F("awarded_at"),
            b_expires=F("expires_at"),
        )
    )
    sql, params = queryset.query.sql_with_params()
    adapted_now = connection.ops.adapt_datetimefield_value(_SENTINEL_NOW)
    slots = tuple(
        "member" if value == _SENTINEL_MEMBER else "now" if value in (_SENTINEL_NOW, adapted_now) else value
        for value in params
    )
    return sql, slots
