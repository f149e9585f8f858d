"""RFM, value layers, lifecycle stages, churn scores and automatic tags, recomputed set-based.

A run works in three phases over member-id ranges (or, for the incremental run, over the
members with new events), every step one SQL statement over the range:

1. raw figures into drafts (`MemberScoreDraft`, written once): recency, frequency and monetary
   over the RFM window, recent orders, customer age, days without activity, live-stream
   watches, top interaction, points expiring, and the lifecycle stage;
2. cut points: the full run derives the R, F and M cut points from the whole population
   (rank-based quantiles among members who bought in the window, ties sharing a score), the
   value-layer cut points from the composite, and fits the churn model (BG/NBD,
   members/churn_model.py); it keeps them on its run row; the incremental run reuses the last
   full run's, so both score alike;
3. publishing, in one transaction: stage changes appended to StageTransition, and per range
   one UPDATE writing the classified drafts into MemberScore (R, F, M scores, value layer,
   P(alive) and expected purchases, churn risk with its reasons, computed in the statement),
   automatic tags synced, today's layer/stage counts snapshotted. A run that fails or is
   superseded before that leaves the published results as they were.

Portable between PostgreSQL and SQLite (>= 3.33: window functions, UPSERT, UPDATE … FROM).
Statements use named parameters; datetimes are passed through `connection.ops` adapters.
"""

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from members.models import InteractionKind, Member, MemberEvent, MemberTag, Tag, TagKind
from members.models_layers import (
    AutomaticTag,
    LayerJobRun,
    LayerSettings,
    LayerSnapshot,
    LifecycleStage,
    MemberScore,
    MemberScoreDraft,
    StageTransition,
    ValueLayer,
)
from members.selectors import member_id_ranges
from members.services.windows import PREFERENCE_COLUMNS, WINDOWS, event_windows_advance, window_aggregates

logger = logging.getLogger(__name__)

# A run that has not reported progress for this long is taken as dead: a newer run supersedes it.
STUCK_AFTER = timedelta(minutes=15)
RANGE_SIZE = 50_000
IDS_SLICE = 10_000
# Distinct (x, t_x, T) summaries the churn model is fitted on at most; a uniform sample above.
MAX_FIT_GROUPS = 50_000
# A small L2 penalty keeps the fit away from degenerate parameters on small or odd populations
# (lifetimes recommends 0.001-0.1); the golden CDNOW test fits without it.
FIT_PENALIZER = 0.001
PUBLISH_LOCK_KEY = 4_104_001  # pg advisory lock: one publish at a time

Progress = Callable[[LayerJobRun], None]


class RunSuperseded(Exception):
    """A newer run took over; this one stops without publishing."""


# Default automatic tags (name, rule, argument). Names are data: staff may rename them.
DEFAULT_AUTOMATIC_TAGS = [
    ("高消费", AutomaticTag.Rule.HIGH_SPENDER, ""),
    ("本月生日", AutomaticTag.Rule.BIRTHDAY_MONTH, ""),
    ("爱看直播", AutomaticTag.Rule.LIVE_LOVER, ""),
    ("积分即将过期", AutomaticTag.Rule.POINTS_EXPIRING, ""),
    ("偏好:浏览", AutomaticTag.Rule.PREFERS, InteractionKind.VIEW),
    ("偏好:点赞", AutomaticTag.Rule.PREFERS, InteractionKind.LIKE),
    ("偏好:评论", AutomaticTag.Rule.PREFERS, InteractionKind.COMMENT),
    ("偏好:分享", AutomaticTag.Rule.PREFERS, InteractionKind.SHARE),
    ("偏好:直播", AutomaticTag.Rule.PREFERS, InteractionKind.LIVE_WATCH),
    ("偏好:文章", AutomaticTag.Rule.PREFERS, InteractionKind.ARTICLE_READ),
]


# Reasons ------------------------------------------------------------------------------------


def churn_reasons_text(reasons: dict | None) -> str:
    """'no interaction for 21 days; purchase rate down 60%; points expiring', in the active language."""
    if not reasons:
        return ""
    parts = []
    if reasons.get("inactive_days") is not None:
        days = int(reasons["inactive_days"])
        parts.append(
            ngettext("no interaction for %(days)d day", "no interaction for %(days)d days", days) % {"days": days}
        )
    if reasons.get("purchase_drop_pct") is not None:
        parts.append(_("purchase rate down %(pct)d%%") % {"pct": int(reasons["purchase_drop_pct"])})
    if reasons.get("p_alive_pct") is not None:
        parts.append(_("only %(pct)d%% likely to buy again") % {"pct": int(reasons["p_alive_pct"])})
    if reasons.get("points_expiring"):
        parts.append(_("points expiring"))
    return "; ".join(parts)


# SQL helpers --------------------------------------------------------------------------------


def _pg() -> bool:
    return connection.vendor == "postgresql"


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _dt(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _days_since(column: str, ref: str = "%(now)s") -> str:
    """Whole days from `column` to the reference time, never negative."""
    if _pg():
        return (
            f"GREATEST(0, CAST(FLOOR(EXTRACT(EPOCH FROM (CAST({ref} AS timestamptz) - {column})) / 86400) AS integer))"
        )
    return f"MAX(0, CAST(julianday({ref}) - julianday({column}) AS INTEGER))"


def _least(a: str, b: str) -> str:
    return f"LEAST({a}, {b})" if _pg() else f"MIN({a}, {b})"


def _kinds(kinds: Iterable[str]) -> str:
    # Our own enum values, never user input.
    return ", ".join(f"'{kind}'" for kind in sorted(kinds))


@dataclass(frozen=True)
class Scope:
    """The members a step works on: an id range (full run) or a list of ids (incremental)."""

    first: int | None = None
    last: int | None = None
    ids: tuple[int, ...] | None = None

    def sql(self, column: str) -> tuple[str, dict]:
        """The scope over members (or events) by member id."""
        if self.ids is None:
            return f"{column} BETWEEN %(scope_first)s AND %(scope_last)s", {
                "scope_first": self.first,
                "scope_last": self.last,
            }
        if _pg():
            # The array goes as a literal: psycopg's list adapter inspects every element.
            return f"{column} = ANY(%(scope_ids)s::bigint[])", {"scope_ids": "{" + ",".join(map(str, self.ids)) + "}"}
        return f"{column} IN (SELECT value FROM json_each(%(scope_ids)s))", {"scope_ids": json.dumps(list(self.ids))}

    def drafts_sql(self, column: str) -> tuple[str, dict]:
        """The scope over the run's drafts. A slice of sorted ids holds every drafted id between
        its first and last (other slices lie outside), so a range will do: as an index scan's
        filter, `= ANY(array)` is searched element by element for every row (10,000 x 10,000
        comparisons for an incremental run's slice)."""
        if self.ids is None:
            return self.sql(column)
        return f"{column} BETWEEN %(scope_first)s AND %(scope_last)s", {
            "scope_first": min(self.ids),
            "scope_last": max(self.ids),
        }


def _execute(sql: str, params: dict) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _fetchall(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Memory for one sort or hash of a statement over a million drafts (cut-point sorts, the hash
# joins of publishing); PostgreSQL's default of 4 MB sends them to temporary files.
WORK_MEM = "64MB"


def _tune_for_big_statements() -> None:
    """For the rest of the current transaction (PostgreSQL): more memory for sorts and hashes,
    and no JIT compilation. A statement over a million rows is priced above PostgreSQL's JIT
    thresholds; compiling its expressions cost 0.3-0.8 s of CPU per statement (measured on the
    window move at 1M: 0.8 s of its 3.4 s), more than the compiled code saves here."""
    if _pg():
        _execute(f"SET LOCAL work_mem = '{WORK_MEM}'", {})
        _execute("SET LOCAL jit = off", {})


DRAFT = MemberScoreDraft._meta.db_table
MEMBER = Member._meta.db_table
EVENT = MemberEvent._meta.db_table


# Run bookkeeping ----------------------------------------------------------------------------


def _run_start(*, kind: str, as_of: datetime, started_by=None) -> LayerJobRun:
    """Create the run row; supersede runs of the same kind and any that stopped reporting."""
    now = timezone.now()
    running = LayerJobRun.objects.filter(status=LayerJobRun.Status.RUNNING)
    stale = running.filter(kind=kind) | running.filter(heartbeat_at__lt=now - STUCK_AFTER)
    superseded = list(stale.values_list("pk", flat=True))
    if superseded:
        LayerJobRun.objects.filter(pk__in=superseded).update(
            status=LayerJobRun.Status.SUPERSEDED,
            finished_at=now,
            error="Superseded by a newer run.",
        )
        logger.warning("layer runs superseded: %s", superseded)
        # A run deletes its drafts when it publishes or fails; a stuck one never got there.
        MemberScoreDraft.objects.filter(run_id__in=superseded).delete()
    last_event = MemberEvent.objects.aggregate(last=Max("id"))["last"]
    return LayerJobRun.objects.create(
        kind=kind,
        started_at=now,
        heartbeat_at=now,
        events_until=as_of,
        last_event_id=last_event or 0,
        started_by=started_by,
    )


def _checkpoint(run: LayerJobRun, *, step: str, advance: int = 0, progress: Progress | None = None) -> None:
    """Record progress (committed at once, so the admin shows it) and stop if superseded."""
    status = LayerJobRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    if status != LayerJobRun.Status.RUNNING:
        raise RunSuperseded(f"run {run.pk} is {status}")
    run.step = step
    run.done += advance
    run.heartbeat_at = timezone.now()
    LayerJobRun.objects.filter(pk=run.pk).update(step=run.step, done=run.done, heartbeat_at=run.heartbeat_at)
    if progress is not None:
        progress(run)


def _run_fail(run: LayerJobRun, error: BaseException) -> None:
    MemberScoreDraft.objects.filter(run_id=run.pk).delete()
    status = LayerJobRun.Status.SUPERSEDED if isinstance(error, RunSuperseded) else LayerJobRun.Status.FAILED
    LayerJobRun.objects.filter(pk=run.pk, status=LayerJobRun.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), error=str(error)[:4000]
    )
    run.refresh_from_db()


# Phase 1: raw figures -----------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    run: LayerJobRun
    settings: LayerSettings
    now: datetime

    def params(self, **extra) -> dict:
        s = self.settings
        now = self.now
        return {
            "run": self.run.pk,
            "now": _dt(now),
            "window_start": _dt(now - timedelta(days=s.rfm_window_days)),
            "trend_start": _dt(now - timedelta(days=s.trend_days)),
            **extra,
        }


def _draft_raw(ctx: Context, scope: Scope) -> int:
    """One INSERT … SELECT per scope from the windowed figures on Member (members/services/
    windows.py), less the events after the run's time, which they include (usually none)."""
    s = ctx.settings
    member_scope, scope_params = scope.sql("m.id")
    event_scope, _unused = scope.sql("e.member_id")
    figures = window_aggregates({window: "1 = 1" for window in WINDOWS})
    later = ", ".join(f"{aggregate} AS {column}" for column, aggregate in figures.items() if not column.endswith("_at"))

    def net(column: str) -> str:
        return f"(m.{column} - COALESCE(f.{column}, 0))"

    orders = net("window_orders")
    # The stage needs no cut point: it is drafted here, from the member row at hand.
    stage, stage_params = _stage_sql(ctx, orders)
    counts = {kind: net(column) for kind, column in PREFERENCE_COLUMNS.items()}
    top = _greatest(list(counts.values()))
    # The most frequent interaction sub-kind of the period; ties go to the first by name.
    top_kind = " ".join(f"WHEN {count} = {top} THEN '{kind}'" for kind, count in counts.items())
    birthday_month = "EXTRACT(MONTH FROM m.birthday)" if _pg() else "CAST(strftime('%%m', m.birthday) AS INTEGER)"
    sql = f"""
        INSERT INTO {DRAFT} (run_id, member_id, recency_days, frequency, monetary, recent_frequency,
            first_purchase_days, inactive_days, lifecycle_stage, live_watches, top_interaction, points_expiring,
            birthday_month)
        SELECT %(run)s, m.id,
            CASE WHEN m.last_purchase_at IS NULL THEN NULL ELSE {_days_since("m.last_purchase_at")} END,
            {orders}, {net("window_spent")}, {net("trend_orders")},
            CASE WHEN {orders} > 0 AND m.window_first_purchase_at IS NOT NULL
                 THEN {_days_since("m.window_first_purchase_at")} END,
            {_days_since("COALESCE(m.last_active_at, m.joined_at)")}, {stage}, {net("live_watches")},
            CASE WHEN {top} >= %(pref_min)s THEN CASE {top_kind} END ELSE '' END, FALSE, {birthday_month}
        FROM {MEMBER} m
        LEFT JOIN (
            SELECT e.member_id, {later} FROM {EVENT} e
            WHERE {event_scope} AND e.occurred_at > %(now)s
            GROUP BY e.member_id
        ) f ON f.member_id = m.id
        WHERE {member_scope}
    """
    params = ctx.params(pref_min=s.content_preference_min_events, **scope_params, **stage_params)
    _tune_for_big_statements()  # the callers run each scope in a transaction of its own
    written = _execute(sql, params)
    _draft_points_expiring(ctx, scope)
    return written


def _greatest(values: list[str]) -> str:
    return f"GREATEST({', '.join(values)})" if _pg() else f"MAX({', '.join(values)})"


def _points_expiring_queryset(*, days: int, now: datetime):
    """Members with points expiring soon, from the loyalty app when it offers the selector."""
    try:
        from loyalty.selectors import members_with_points_expiring
    except ImportError:  # loyalty not installed or not built yet: the tag and the reason stay off
        return None
    return members_with_points_expiring(days=days, now=now)


def _draft_points_expiring(ctx: Context, scope: Scope) -> None:
    expiring = _points_expiring_queryset(days=ctx.settings.points_expiring_days, now=ctx.now)
    if expiring is None:
        return
    members = Member.objects.filter(pk__in=expiring.order_by().values("pk"))
    if scope.ids is None:
        members = members.filter(pk__range=(scope.first, scope.last))
    else:
        members = members.filter(pk__in=list(scope.ids))
    sql, params = members.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {DRAFT} SET points_expiring = TRUE WHERE run_id = %s AND member_id IN ({sql})",
            [ctx.run.pk, *params],
        )


# Phase 2: R, F, M scores ----------------------------------------------------------------------

# Sort keys: a higher key is better. Recency: fewer days since the last purchase is better.
_SCORE_KEYS = {
    "r": "(-COALESCE(recency_days, 0))",
    "f": "frequency",
    "m": "monetary",
}


def rfm_cut_points(*, run_id: int, buckets: int) -> dict[str, list[list]]:
    """For each of R, F and M: [score, lowest key with that score] among members who bought.

    Score = 1 + floor(buckets * (rank - 1) / N), rank counted from the lowest key with ties
    sharing the lowest rank, so equal values always get equal scores.
    """
    cuts: dict[str, list[list]] = {}
    with transaction.atomic():
        _tune_for_big_statements()
        for name, key in _SCORE_KEYS.items():
            cuts[name] = _cut_points_of(run_id=run_id, buckets=buckets, key=key)
    return cuts


def _cut_points_of(*, run_id: int, buckets: int, key: str) -> list[list]:
    rows = _fetchall(
        f"""
        SELECT bucket, MIN(k) FROM (
            SELECT {key} AS k,
                   1 + (RANK() OVER (ORDER BY {key}) - 1) * %(buckets)s / COUNT(*) OVER () AS bucket
            FROM {DRAFT} WHERE run_id = %(run)s AND frequency > 0
        ) ranked GROUP BY bucket ORDER BY bucket
        """,
        {"run": run_id, "buckets": buckets},
    )
    return [[int(bucket), str(low)] for bucket, low in rows]


def _number(text: str):
    """A cut point as a SQL parameter. SQLite compares a bound text with an expression as text,
    so numbers must be bound as numbers; PostgreSQL keeps decimals exact."""
    value = Decimal(text)
    if value == value.to_integral_value():
        return int(value)
    return value if _pg() else float(value)


def _score_case(key: str, cuts: list[list], prefix: str) -> tuple[str, dict]:
    params = {}
    branches = []
    for bucket, low in sorted(cuts, key=lambda c: -c[0]):
        if bucket <= 1:
            continue
        name = f"{prefix}{bucket}"
        params[name] = _number(low)
        branches.append(f"WHEN {key} >= %({name})s THEN {int(bucket)}")
    if not branches:
        return "1", params
    return f"CASE WHEN frequency = 0 THEN 1 {' '.join(branches)} ELSE 1 END", params


def _score_cases(cut_points: dict) -> tuple[dict[str, str], dict]:
    """SQL for the R, F and M scores of a draft row from the run's cut points."""
    cases, params = {}, {}
    for name, key in _SCORE_KEYS.items():
        case, case_params = _score_case(key, cut_points.get(name, []), f"cut_{name}_")
        cases[name] = case
        params.update(case_params)
    return cases, params


def layer_cut_points(
    *, run_id: int, high_percent: int, potential_percent: int, rfm_cuts: dict
) -> dict[str, int | None]:
    """Lowest RFM score of the high-value and potential layers.

    Members are ranked by RFM score, highest first, ties sharing a rank; rank r of N is in the
    high-value layer when (r - 1) / N < high%, in the potential layer when below high% +
    potential%. Members without a purchase in the window rank last and are always edge.
    The composite is computed from the R, F and M cut points and only counted (one GROUP BY
    over the drafts, a dozen rows back): the scores themselves are written once, later.
    """
    cases, params = _score_cases(rfm_cuts)
    key = f"CASE WHEN frequency = 0 THEN 0 ELSE ({cases['r']}) + ({cases['f']}) + ({cases['m']}) END"
    with transaction.atomic():
        _tune_for_big_statements()
        rows = _fetchall(
            f"SELECT {key} AS k, COUNT(*) FROM {DRAFT} WHERE run_id = %(run)s GROUP BY {key}",
            {"run": run_id, **params},
        )
    total = sum(count for _key, count in rows)
    found: dict[str, int] = {}
    better = 0  # members with a higher composite: rank - 1
    for composite, count in sorted(rows, key=lambda row: -row[0]):
        if composite > 0:
            if better * 100 < high_percent * total:
                found["high"] = int(composite)
            elif better * 100 < (high_percent + potential_percent) * total:
                found["potential"] = int(composite)
        better += count
    return {"high": found.get("high"), "potential": found.get("potential")}


# Phase 3: layer, stage, churn ---------------------------------------------------------------


def _layer_sql(layer_cuts: dict, composite: str) -> tuple[str, dict]:
    branches = []
    if layer_cuts.get("high") is not None:
        branches.append(f"WHEN {composite} >= %(layer_high)s THEN '{ValueLayer.HIGH}'")
    if layer_cuts.get("potential") is not None:
        branches.append(f"WHEN {composite} >= %(layer_potential)s THEN '{ValueLayer.POTENTIAL}'")
    layer = f"CASE WHEN frequency = 0 THEN '{ValueLayer.EDGE}' {' '.join(branches)} ELSE '{ValueLayer.EDGE}' END"
    return layer, {"layer_high": layer_cuts.get("high"), "layer_potential": layer_cuts.get("potential")}


def _stage_sql(ctx: Context, frequency: str) -> tuple[str, dict]:
    """The lifecycle stage from the member row `m` and the orders of the window."""
    s = ctx.settings
    # First matching rule wins. Activity is any kind but leaving a group (ACTIVE_KINDS): a member
    # who buys less but reads or watches daily stays active. Silent is judged on three
    # dimensions, each quiet for silent_days: purchases, campaign participation and following.
    life = "COALESCE(m.last_active_at, m.joined_at)"
    stage = f"""CASE
        WHEN m.joined_at >= %(new_cut)s THEN '{LifecycleStage.NEW}'
        WHEN COALESCE(m.last_purchase_at, m.joined_at) < %(silent_cut)s
             AND COALESCE(m.last_interaction_at, m.joined_at) < %(silent_cut)s
             AND {life} < %(silent_cut)s THEN '{LifecycleStage.SILENT}'
        WHEN {life} < %(churned_cut)s THEN '{LifecycleStage.CHURNED}'
        WHEN {life} < %(at_risk_cut)s THEN '{LifecycleStage.AT_RISK}'
        WHEN {frequency} > 0 THEN '{LifecycleStage.PAYING}'
        ELSE '{LifecycleStage.ACTIVE}' END"""
    params = {
        "new_cut": _dt(ctx.now - timedelta(days=s.new_member_days)),
        "silent_cut": _dt(ctx.now - timedelta(days=s.silent_days)),
        "churned_cut": _dt(ctx.now - timedelta(days=s.churned_days)),
        "at_risk_cut": _dt(ctx.now - timedelta(days=s.at_risk_days)),
    }
    return stage, params


# BG/NBD's t_x: days from the first purchase of the window to the last. Zero with one purchase;
# never negative nor past T, even when the rollup's last purchase lies after the run's as-of time.
_T_X = """CASE WHEN frequency <= 1 OR recency_days IS NULL OR recency_days >= first_purchase_days THEN 0
                ELSE first_purchase_days - recency_days END"""


def fit_churn_model(*, run_id: int, seed: int = 0):
    """Fit BG/NBD on the drafts' purchase summaries, grouped so that equal summaries weigh once."""
    from members import churn_model

    with transaction.atomic():
        _tune_for_big_statements()
        rows = _fetchall(
            f"""
            SELECT frequency - 1, {_T_X}, first_purchase_days, COUNT(*)
            FROM {DRAFT} WHERE run_id = %(run)s AND frequency > 0 AND first_purchase_days IS NOT NULL
            GROUP BY frequency - 1, {_T_X}, first_purchase_days
            """,
            {"run": run_id},
        )
    if not rows:
        return None
    data = np.asarray(rows, dtype=float)
    if len(data) > MAX_FIT_GROUPS:
        keep = np.random.default_rng(seed).choice(len(data), size=MAX_FIT_GROUPS, replace=False)
        data = data[keep]
    try:
        return churn_model.fit(
            frequency=data[:, 0], recency=data[:, 1], T=data[:, 2], weights=data[:, 3], penalizer=FIT_PENALIZER
        )
    except churn_model.ChurnModelError as error:
        logger.warning("churn model not fitted: %s", error)
        return None


def _predictions(ctx: Context, scope: Scope, params) -> tuple[str, dict] | None:
    """P(alive) and expected purchases of the scope's buyers (BG/NBD, vectorized), as a row
    source (id, p, e30, e90) for the UPDATE that finishes the drafts; None without a model.

    The values travel as a few array parameters (PostgreSQL, unnest) or one JSON document
    (SQLite, json_each), never as one placeholder per value: the driver's query conversion
    grows with the placeholders and cost more than the update itself.
    """
    from members import churn_model

    if params is None:
        return None
    draft_scope, scope_params = scope.drafts_sql("member_id")
    rows = _fetchall(
        f"""SELECT member_id, frequency - 1, {_T_X}, first_purchase_days
            FROM {DRAFT} WHERE run_id = %(run)s AND frequency > 0 AND first_purchase_days IS NOT NULL
              AND {draft_scope}""",
        ctx.params(**scope_params),
    )
    if not rows:
        return None
    data = np.asarray(rows, dtype=float)
    # A first purchase today gives T = 0, where the model is undefined: count it as half a day.
    age = np.maximum(data[:, 3], 0.5)
    prediction = churn_model.predict(
        params=params, frequency=data[:, 1], recency=np.minimum(data[:, 2], age), T=age, horizons_days=(30, 90)
    )
    member_ids = data[:, 0].astype(np.int64).tolist()

    def values(array) -> list:
        # A fit at the edge of its domain can overflow for some summaries: no figure (NULL)
        # rather than NaN or infinity.
        rounded = np.round(np.asarray(array, dtype=float), 6)
        finite = np.isfinite(rounded)
        if finite.all():
            return rounded.tolist()
        return [value if ok else None for value, ok in zip(rounded.tolist(), finite.tolist(), strict=True)]

    p_alive, e30, e90 = values(prediction.p_alive), values(prediction.expected[0]), values(prediction.expected[1])
    if _pg():
        source = (
            "SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(p)s::float8[]) AS p, "
            "unnest(%(e30)s::float8[]) AS e30, unnest(%(e90)s::float8[]) AS e90"
        )
        # Array literals built here: psycopg's list adapter inspects every element (a regex per
        # float), which cost more client time than the rest of the run at a million members.
        arrays = {"ids": member_ids, "p": p_alive, "e30": e30, "e90": e90}
        return source, {
            name: "{" + ",".join("NULL" if value is None else str(value) for value in column) + "}"
            for name, column in arrays.items()
        }
    source = (
        "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS p, "
        "json_extract(value, '$[2]') AS e30, json_extract(value, '$[3]') AS e90 FROM json_each(%(rows)s)"
    )
    return source, {"rows": json.dumps(list(zip(member_ids, p_alive, e30, e90, strict=True)))}


def _classified(
    ctx: Context, scope: Scope, rfm_cuts: dict, layer_cuts: dict, predictions: tuple[str, dict] | None
) -> tuple[str, dict]:
    """SELECT of the scope's drafts as published score rows: the raw figures and the stage as
    drafted, with R, F, M and RFM scores, value layer, P(alive) and expected purchases, churn
    risk 0-100 and its reasons. Publishing writes it into MemberScore: the drafts are written
    once (raw) and never rewritten.

    Churn risk:

    Inactivity weighs most (40 at the at-risk threshold rising to 80 at silent); a purchase
    rate down by at least the configured share adds up to 20; a low P(alive) up to 30; points
    expiring 10. Buying signals count half for a member active within the at-risk threshold:
    who buys less but engages daily is not drifting.
    """
    s = ctx.settings
    draft_scope, scope_params = scope.drafts_sql("d.member_id")
    cases, case_params = _score_cases(rfm_cuts)
    composite = f"(({cases['r']}) + ({cases['f']}) + ({cases['m']}))"
    layer, params = _layer_sql(layer_cuts, composite)
    params.update(
        ctx.params(**case_params, **scope_params),
        ar=s.at_risk_days,
        span=max(s.silent_days - s.at_risk_days, 1),
        silent=s.silent_days,
        trend=s.trend_days,
        drop_min=s.purchase_drop_percent,
        low_alive=s.low_p_alive_percent,
    )
    # Rate of the trend period against the rate before it (within the window, since the first
    # purchase); a member whose first purchase falls in the trend period has no "before".
    previous = "(frequency - recent_frequency)"
    previous_days = "CASE WHEN first_purchase_days - %(trend)s < 1 THEN 1 ELSE first_purchase_days - %(trend)s END"
    drop = f"(100.0 - 100.0 * recent_frequency * ({previous_days}) / ({previous} * %(trend)s))"
    drop_pct = f"""(CASE WHEN {previous} > 0 AND first_purchase_days IS NOT NULL AND {drop} >= %(drop_min)s
                        THEN CAST({drop} AS INTEGER) END)"""
    inactivity = """CASE WHEN inactive_days < %(ar)s THEN 0 WHEN inactive_days >= %(silent)s THEN 80
                     ELSE 40 + 40 * (inactive_days - %(ar)s) / %(span)s END"""
    # The buyers the churn model predicted for carry their predictions (p, e30, e90); the
    # others have none.
    if predictions is None:
        source = f"SELECT d.*, {', '.join(f'CAST(NULL AS FLOAT) AS {c}' for c in ('p', 'e30', 'e90'))} FROM {DRAFT} d"
    else:
        params.update(predictions[1])
        source = f"SELECT d.*, v.p, v.e30, v.e90 FROM {DRAFT} d LEFT JOIN ({predictions[0]}) v ON v.id = d.member_id"
    low_alive = "p IS NOT NULL AND p * 100 < %(low_alive)s"
    buying = f"""(CASE WHEN {drop_pct} IS NULL THEN 0 ELSE 20 * {drop_pct} / 100 END
                  + CASE WHEN {low_alive} THEN CAST(30 * (1 - p) AS INTEGER) ELSE 0 END)"""
    buying = f"CASE WHEN inactive_days < %(ar)s THEN {buying} / 2 ELSE {buying} END"
    risk = f"({inactivity} + {buying} + CASE WHEN points_expiring THEN 10 ELSE 0 END)"
    entries = [
        ("inactive_days", "CASE WHEN inactive_days >= %(ar)s THEN inactive_days END"),
        ("purchase_drop_pct", drop_pct),
        ("p_alive_pct", f"CASE WHEN {low_alive} THEN CAST(ROUND(p * 100) AS INTEGER) END"),
        ("points_expiring", "CASE WHEN points_expiring THEN 1 END"),
    ]
    pairs = ", ".join(f"'{key}', {value}" for key, value in entries)
    # Keys whose value is NULL are dropped: PostgreSQL strips nulls, SQLite's json_patch removes them.
    reasons = (
        f"jsonb_strip_nulls(jsonb_build_object({pairs}))" if _pg() else f"json_patch('{{}}', json_object({pairs}))"
    )
    sql = f"""SELECT member_id, recency_days, frequency, monetary, recent_frequency, first_purchase_days,
            inactive_days, {cases["r"]} AS r_score, {cases["f"]} AS f_score, {cases["m"]} AS m_score,
            {composite} AS rfm_score, {layer} AS value_layer, lifecycle_stage,
            p AS p_alive, e30 AS expected_purchases_30d, e90 AS expected_purchases_90d,
            {_least(risk, "100")} AS churn_risk, {reasons} AS churn_reasons
        FROM ({source} WHERE d.run_id = %(run)s AND {draft_scope}) drafted"""
    return sql, params


# Publishing ---------------------------------------------------------------------------------

_SCORE_COLUMNS = [
    "recency_days",
    "frequency",
    "monetary",
    "recent_frequency",
    "first_purchase_days",
    "inactive_days",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "value_layer",
    "lifecycle_stage",
    "p_alive",
    "expected_purchases_30d",
    "expected_purchases_90d",
    "churn_risk",
    "churn_reasons",
]


def _analyze_drafts() -> None:
    """Refresh the planner's statistics of the drafts (PostgreSQL).

    The drafts table swings from a million rows of one run to ten thousand of the next; with
    statistics from the other extreme the planner joins the drafts to Member and MemberTag by
    scanning whole tables (10 s instead of a fraction of one for an incremental run at 1M).
    ANALYZE reads a sample, so it costs well under a second.
    """
    if _pg():
        # The columns the publishing statements filter and join on; the row count comes along.
        _execute(f"ANALYZE {DRAFT} (run_id, member_id)", {})


def _publish(ctx: Context, scopes: list[Scope], rfm_cuts: dict, layer_cuts: dict, model) -> int:
    """Classify the run's drafts and make them the published results, in one transaction.

    Per scope, the churn model predicts for the buyers (client side, vectorized) and one UPDATE
    writes the classified drafts (`_classified`) into the score rows.
    """
    score = MemberScore._meta.db_table
    transition = StageTransition._meta.db_table
    params = ctx.params()
    _analyze_drafts()
    with transaction.atomic():
        if _pg():
            _execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": PUBLISH_LOCK_KEY})
        _tune_for_big_statements()
        if _pg() and ctx.run.kind == LayerJobRun.Kind.INCREMENTAL:
            # A few thousand drafts against a million score rows: probe the primary key rather
            # than hash the whole table. The default random_page_cost (4) prices each probe as a
            # disk seek; the score table is read from memory here.
            _execute("SET LOCAL random_page_cost = 1.1", {})
        status = LayerJobRun.objects.select_for_update().filter(pk=ctx.run.pk).values_list("status", flat=True).first()
        if status != LayerJobRun.Status.RUNNING:
            raise RunSuperseded(f"run {ctx.run.pk} is {status}")
        counted_out = _drafted_counts(ctx)
        # A first stage is not a change; a stage unchanged since the last run is not one either.
        _execute(
            f"""INSERT INTO {transition} (member_id, from_stage, to_stage, at)
                SELECT d.member_id, p.lifecycle_stage, d.lifecycle_stage, %(now)s
                FROM {DRAFT} d JOIN {score} p ON p.member_id = d.member_id
                WHERE d.run_id = %(run)s AND p.lifecycle_stage <> '' AND p.lifecycle_stage <> d.lifecycle_stage""",
            params,
        )
        # Members scored for the first time get a row, classified with the others just below.
        _execute(
            f"""INSERT INTO {score} (member_id, frequency, monetary, recent_frequency, r_score, f_score, m_score,
                    rfm_score, value_layer, lifecycle_stage, churn_risk, churn_reasons, stage_since, computed_at)
                SELECT d.member_id, 0, 0, 0, 1, 1, 1, 3, '{ValueLayer.EDGE}', d.lifecycle_stage, 0, '{{}}',
                       %(now)s, %(now)s
                FROM {DRAFT} d JOIN {MEMBER} m ON m.id = d.member_id
                WHERE d.run_id = %(run)s
                  AND NOT EXISTS (SELECT 1 FROM {score} s WHERE s.member_id = d.member_id)""",
            params,
        )
        # Rows are updated in place (HOT unless a layer, stage, RFM score or risk moved: no index
        # on a column that moves daily, and room left on each page, migration 0010).
        updates = ", ".join(f"{c} = c.{c}" for c in _SCORE_COLUMNS)
        written = 0
        for scope in scopes:
            classified, classified_params = _classified(
                ctx, scope, rfm_cuts, layer_cuts, _predictions(ctx, scope, model)
            )
            score_scope, _same = scope.drafts_sql(f"{score}.member_id")
            written += _execute(
                f"""UPDATE {score} SET {updates},
                        stage_since = CASE WHEN {score}.lifecycle_stage = c.lifecycle_stage
                                           THEN {score}.stage_since ELSE %(now)s END,
                        computed_at = %(now)s
                    FROM ({classified}) c
                    WHERE {score}.member_id = c.member_id AND {score_scope}""",
                classified_params,
            )
        deltas = None if counted_out is None else _drafted_counts(ctx, minus=counted_out)
        _sync_automatic_tags(ctx)
        _snapshot_counts(ctx.now, deltas=deltas)
        truncated = _drafts_clear(ctx.run.pk)
        now = timezone.now()
        LayerJobRun.objects.filter(pk=ctx.run.pk).update(
            status=LayerJobRun.Status.SUCCEEDED,
            finished_at=now,
            heartbeat_at=now,
            rows=written,
            done=ctx.run.total,
            step="done",
        )
    ctx.run.refresh_from_db()
    if not truncated:
        _vacuum_drafts()
    if _pg() and ctx.run.kind == LayerJobRun.Kind.FULL:
        # Every score row was just rewritten: fresh statistics for the segment queries' planner
        # (a sample of the table; autovacuum would get to it later).
        _execute(f"ANALYZE {MemberScore._meta.db_table}", {})
    return written


def _drafts_clear(run_id: int) -> bool:
    """Remove the run's drafts inside the publishing transaction; True when the table was emptied
    with TRUNCATE.

    Deleting a full run's million drafts row by row, then vacuuming them, cost seconds; when no
    other run has drafts (PostgreSQL; checked under an exclusive lock, so none can start writing
    meanwhile; it waits until publishing commits), TRUNCATE empties the table at once.
    """
    if _pg():
        _execute(f"LOCK TABLE {DRAFT} IN ACCESS EXCLUSIVE MODE", {})
        others = _fetchall(
            f"""SELECT EXISTS (SELECT 1 FROM {DRAFT} WHERE run_id < %(run)s)
                    OR EXISTS (SELECT 1 FROM {DRAFT} WHERE run_id > %(run)s)""",
            {"run": run_id},
        )[0][0]
        if not others:
            _execute(f"TRUNCATE {DRAFT}", {})
            return True
    MemberScoreDraft.objects.filter(run_id=run_id).delete()
    return False


def _vacuum_drafts() -> None:
    """Reclaim the drafts just deleted (PostgreSQL, outside a transaction block only).

    A full run leaves a million dead draft rows; until autovacuum reaches them, the next
    run's statements on the drafts read them all.
    """
    if _pg() and not connection.in_atomic_block:
        _execute(f"VACUUM {DRAFT}", {})


def automatic_tags_ensure() -> dict[tuple[str, str], int]:
    """The automatic tags by (rule, argument), creating the default ones that are missing."""
    existing = {(a.rule, a.argument): a.tag_id for a in AutomaticTag.objects.all()}
    for name, rule, argument in DEFAULT_AUTOMATIC_TAGS:
        if (rule, argument) in existing:
            continue
        tag, _created = Tag.objects.get_or_create(name=name, defaults={"kind": TagKind.AUTOMATIC})
        if tag.kind != TagKind.AUTOMATIC:
            tag.kind = TagKind.AUTOMATIC
            tag.save(update_fields=["kind", "updated_at"])
        AutomaticTag.objects.get_or_create(rule=rule, argument=argument, defaults={"tag": tag})
        existing[(rule, argument)] = tag.pk
    return existing


def _tag_condition(rule: str, argument_param: str) -> str:
    Rule = AutomaticTag.Rule
    if rule == Rule.HIGH_SPENDER:
        return "d.monetary >= %(high_spender)s"
    if rule == Rule.BIRTHDAY_MONTH:
        return "d.birthday_month = %(month)s"
    if rule == Rule.LIVE_LOVER:
        return "d.live_watches >= %(live_min)s"
    if rule == Rule.POINTS_EXPIRING:
        return "d.points_expiring"
    if rule == Rule.PREFERS:
        return f"d.top_interaction = %({argument_param})s"
    raise ValueError(f"unknown automatic tag rule {rule!r}")


def _sync_automatic_tags(ctx: Context) -> None:
    """Set-based: tag the draft members who match each rule, untag those who no longer do.

    Two statements for all the automatic tags together, each a join the planner can hash: an
    INSERT of the matching (member, tag) pairs not linked yet (an anti-join with the links, so
    the links that stay cost no insertion attempt), and a DELETE of the drafted members'
    automatic links whose rule no longer matches.
    """
    s = ctx.settings
    member_tag = MemberTag._meta.db_table
    params = ctx.params(
        high_spender=s.high_spender_yuan,
        live_min=s.live_lover_min_watches,
        month=timezone.localtime(ctx.now).month,
    )
    matches, ids = [], []
    for index, ((rule, argument), tag_id) in enumerate(sorted(automatic_tags_ensure().items())):
        params[f"arg{index}"] = argument
        # Tag ids come from our own table as integers, so they are written into the statement.
        ids.append(str(int(tag_id)))
        matches.append(f"({{tag}} = {int(tag_id)} AND {_tag_condition(rule, f'arg{index}')})")
    if not matches:
        return
    tag_ids = ", ".join(ids)
    any_match = " OR ".join(matches)
    # The run's drafts are read once (materialized), then paired with each automatic tag; without
    # the CTE the planner may rescan the drafts once per tag. Only the pairs to add are checked
    # against Member (a member deleted meanwhile gets no link).
    _execute(
        f"""WITH d AS MATERIALIZED (
                SELECT member_id, monetary, live_watches, points_expiring, top_interaction, birthday_month
                FROM {DRAFT} WHERE run_id = %(run)s
            )
            INSERT INTO {member_tag} (member_id, tag_id, created_at)
            SELECT w.member_id, w.tag_id, %(now)s FROM (
                SELECT d.member_id, t.id AS tag_id
                FROM d CROSS JOIN {Tag._meta.db_table} t
                WHERE t.id IN ({tag_ids}) AND ({any_match.format(tag="t.id")})
                  AND NOT EXISTS (SELECT 1 FROM {member_tag} x WHERE x.member_id = d.member_id AND x.tag_id = t.id)
            ) w
            WHERE EXISTS (SELECT 1 FROM {MEMBER} m WHERE m.id = w.member_id)
            ON CONFLICT (member_id, tag_id) DO NOTHING""",
        params,
    )
    _execute(
        f"""DELETE FROM {member_tag} WHERE tag_id IN ({tag_ids}) AND id IN (
                SELECT x.id FROM {member_tag} x JOIN {DRAFT} d ON d.member_id = x.member_id
                WHERE d.run_id = %(run)s AND x.tag_id IN ({tag_ids})
                  AND NOT COALESCE(({any_match.format(tag="x.tag_id")}), FALSE))""",
        params,
    )


_SNAPSHOT_COLUMNS = (
    (LayerSnapshot.Dimension.LAYER, "value_layer"),
    (LayerSnapshot.Dimension.STAGE, "lifecycle_stage"),
)


def _drafted_counts(ctx: Context, *, minus: dict[tuple[str, str], int] | None = None) -> dict | None:
    """Published layer and stage counts of the run's drafted members, for an incremental run
    when today has a snapshot; with `minus` (those counts before publishing), the change.

    Publishing an incremental run updates today's counts by the change among its own members: a
    few thousand rows instead of counting a million score rows again every hour. None: count
    everything (full runs, first run of the day). Members deleted since the day's count leave
    it at the next full run.
    """
    day = timezone.localdate(ctx.now)
    if ctx.run.kind != LayerJobRun.Kind.INCREMENTAL or not LayerSnapshot.objects.filter(day=day).exists():
        return None
    columns = [column for _dimension, column in _SNAPSHOT_COLUMNS]
    rows = _fetchall(
        f"""SELECT {", ".join(f"p.{column}" for column in columns)}, COUNT(*)
            FROM {MemberScore._meta.db_table} p JOIN {DRAFT} d ON d.member_id = p.member_id
            WHERE d.run_id = %(run)s GROUP BY {", ".join(f"p.{column}" for column in columns)}""",
        {"run": ctx.run.pk},
    )
    counts = _counts_by_dimension(rows)
    if minus is None:
        return counts
    changes = {key: counts.get(key, 0) - minus.get(key, 0) for key in counts.keys() | minus.keys()}
    return {key: change for key, change in changes.items() if change}


def _counts_by_dimension(rows: list[tuple]) -> dict[tuple[str, str], int]:
    """(dimension, value) -> members, from rows (layer, stage, members); empty values skipped."""
    counts: dict[tuple[str, str], int] = {}
    for *values, members in rows:
        for (dimension, _column), value in zip(_SNAPSHOT_COLUMNS, values, strict=True):
            if value:
                counts[(dimension.value, value)] = counts.get((dimension.value, value), 0) + int(members)
    return counts


def _snapshot_counts(now: datetime, *, deltas: dict[tuple[str, str], int] | None = None) -> None:
    day = timezone.localdate(now)
    if deltas is not None:
        for (dimension, value), change in sorted(deltas.items()):
            updated = LayerSnapshot.objects.filter(day=day, dimension=dimension, value=value).update(
                members=F("members") + change
            )
            if not updated and change > 0:
                LayerSnapshot.objects.create(day=day, dimension=dimension, value=value, members=change)
        return
    # Both dimensions from one pass over the score rows (a few dozen groups come back).
    columns = [column for _dimension, column in _SNAPSHOT_COLUMNS]
    rows = _fetchall(
        f"SELECT {', '.join(columns)}, COUNT(*) FROM {MemberScore._meta.db_table} GROUP BY {', '.join(columns)}", {}
    )
    counts = _counts_by_dimension(rows)
    LayerSnapshot.objects.filter(day=day).delete()
    LayerSnapshot.objects.bulk_create(
        LayerSnapshot(day=day, dimension=dimension, value=value, members=members)
        for (dimension, value), members in sorted(counts.items())
    )


# Runs ---------------------------------------------------------------------------------------


def _scopes_for_ranges(range_size: int) -> list[Scope]:
    return [Scope(first=first, last=last) for first, last in member_id_ranges(size=range_size)]


def layers_recompute_full(
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    range_size: int | None = None,
    started_by=None,
) -> LayerJobRun:
    """Recompute every member's scores, layers, stages, churn figures and automatic tags."""
    now = now or timezone.now()
    run = _run_start(kind=LayerJobRun.Kind.FULL, as_of=now, started_by=started_by)
    try:
        ctx = Context(run=run, settings=LayerSettings.load(), now=now or timezone.now())
        _windows_advance(ctx, progress=progress)
        scopes = _scopes_for_ranges(range_size or RANGE_SIZE)
        run.total = len(scopes) + 3
        LayerJobRun.objects.filter(pk=run.pk).update(total=run.total)
        for scope in scopes:
            with transaction.atomic():
                _draft_raw(ctx, scope)
            _checkpoint(run, step="raw figures", advance=1, progress=progress)
        cut_points = rfm_cut_points(run_id=run.pk, buckets=ctx.settings.score_buckets)
        _checkpoint(run, step="score cut points", advance=1, progress=progress)
        layer_cuts = layer_cut_points(
            run_id=run.pk,
            high_percent=ctx.settings.high_value_percent,
            potential_percent=ctx.settings.potential_percent,
            rfm_cuts=cut_points,
        )
        model = fit_churn_model(run_id=run.pk)
        run.cut_points = {"rfm": cut_points, "layers": layer_cuts}
        run.model_params = model.as_dict() if model is not None else {}
        LayerJobRun.objects.filter(pk=run.pk).update(cut_points=run.cut_points, model_params=run.model_params)
        _checkpoint(run, step="layers and churn model", advance=1, progress=progress)
        _publish(ctx, scopes, cut_points, layer_cuts, model)
        if progress is not None:
            progress(run)
    except BaseException as error:
        _run_fail(run, error)
        if isinstance(error, RunSuperseded):
            logger.warning("layer run %s superseded", run.pk)
            return run
        raise
    logger.info("layer run %s done rows=%s", run.pk, run.rows)
    return run


def _windows_advance(ctx: Context, *, progress: Progress | None = None) -> list[int]:
    """Bring the windowed figures on Member to the run's time (members/services/windows.py): move
    the windows' starts, or rebuild the figures when a length changed. Returns the members whose
    figures the move changed."""
    _checkpoint(ctx.run, step="event windows", progress=progress)
    result = event_windows_advance(now=ctx.now, settings_row=ctx.settings)
    _checkpoint(ctx.run, step="event windows", progress=progress)
    if result.rebuilt:
        logger.info("layer run %s rebuilt the event windows", ctx.run.pk)
    return result.members


# Fan-out over Celery workers -------------------------------------------------------------------


def layers_recompute_full_fanout(
    *, now: datetime | None = None, range_size: int | None = None, started_by=None
) -> LayerJobRun:
    """Start a full run whose per-range raw figures are drafted by Celery tasks, as one group.

    The steps and the results are those of layers_recompute_full. No result backend is
    needed: each range task adds one to the run's `done` counter (UPDATE … RETURNING), and the
    task that drafts the last range runs the global steps after them (cut points, the churn
    model's fit, publishing). Returns the run, still running.
    """
    now = now or timezone.now()
    run = _run_start(kind=LayerJobRun.Kind.FULL, as_of=now, started_by=started_by)
    try:
        _windows_advance(Context(run=run, settings=LayerSettings.load(), now=now))
    except BaseException as error:
        _run_fail(run, error)
        raise
    ranges = [[scope.first, scope.last] for scope in _scopes_for_ranges(range_size or RANGE_SIZE)]
    run.total = len(ranges) + 3
    run.cut_points = {"ranges": ranges}
    LayerJobRun.objects.filter(pk=run.pk).update(total=run.total, cut_points=run.cut_points)
    if not ranges:
        _fanout_global_steps(run)
    else:
        _fanout_dispatch(run)
    return run


def _fanout_dispatch(run: LayerJobRun) -> None:
    from celery import group

    from members.tasks import recompute_layers_range

    ranges = run.cut_points["ranges"]
    tasks = group(recompute_layers_range.si(run.pk, "raw", first, last) for first, last in ranges)
    transaction.on_commit(tasks.apply_async)


def _advance(run: LayerJobRun, *, step: str) -> int:
    """Add one unit of work done, atomically among parallel workers; the new count."""
    table = LayerJobRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET done = done + 1, step = %s, heartbeat_at = %s "
            "WHERE id = %s AND status = %s RETURNING done",
            [step, _dt(timezone.now()), run.pk, LayerJobRun.Status.RUNNING.value],
        )
        row = cursor.fetchone()
    if row is None:
        raise RunSuperseded(f"run {run.pk} is no longer running")
    run.done = row[0]
    return run.done


def layers_recompute_range(*, run_id: int, phase: str, first: int, last: int) -> None:
    """The raw figures of one range of a fanned-out full run (called by the Celery task; the
    phase is "raw", the only per-range one)."""
    run = LayerJobRun.objects.filter(pk=run_id).first()
    if run is None or run.status != LayerJobRun.Status.RUNNING:
        return
    try:
        if phase != "raw":
            raise ValueError(f"unknown phase {phase!r}")
        ctx = Context(run=run, settings=LayerSettings.load(), now=run.events_until)
        with transaction.atomic():
            _draft_raw(ctx, Scope(first=first, last=last))
        if _advance(run, step="raw figures") == len(run.cut_points["ranges"]):
            _fanout_global_steps(run)
    except BaseException as error:
        _run_fail(run, error)
        if not isinstance(error, RunSuperseded):
            raise


def _fanout_global_steps(run: LayerJobRun) -> None:
    from members.tasks import refresh_scheduled_segments

    run.refresh_from_db()
    ctx = Context(run=run, settings=LayerSettings.load(), now=run.events_until)
    run.cut_points["rfm"] = rfm_cut_points(run_id=run.pk, buckets=ctx.settings.score_buckets)
    LayerJobRun.objects.filter(pk=run.pk).update(cut_points=run.cut_points)
    _advance(run, step="score cut points")
    run.cut_points["layers"] = layer_cut_points(
        run_id=run.pk,
        high_percent=ctx.settings.high_value_percent,
        potential_percent=ctx.settings.potential_percent,
        rfm_cuts=run.cut_points["rfm"],
    )
    model = fit_churn_model(run_id=run.pk)
    run.model_params = model.as_dict() if model is not None else {}
    LayerJobRun.objects.filter(pk=run.pk).update(cut_points=run.cut_points, model_params=run.model_params)
    _advance(run, step="layers and churn model")
    scopes = [Scope(first=first, last=last) for first, last in run.cut_points["ranges"]]
    _publish(ctx, scopes, run.cut_points["rfm"], run.cut_points["layers"], model)
    logger.info("layer run %s done rows=%s", ctx.run.pk, ctx.run.rows)
    transaction.on_commit(refresh_scheduled_segments.delay)


def changed_member_ids(
    *,
    since_event_id: int,
    since: datetime | None,
    as_of: datetime | None = None,
    previous_as_of: datetime | None = None,
    settings_row: LayerSettings | None = None,
) -> list[int]:
    """The members an incremental run recomputes.

    Members with events recorded after the event id; members who joined the pool since; and,
    given the previous run's as-of time, members whose stage changed by time alone: their last
    activity (or joining) crossed the at-risk, churned or silent threshold, or their joining
    the new-member threshold, between the two runs. Each is an index range scan.
    """
    ids = set(
        MemberEvent.objects.filter(id__gt=since_event_id).order_by().values_list("member_id", flat=True).distinct()
    )
    if since is not None:
        ids.update(Member.objects.filter(created_at__gte=since).values_list("pk", flat=True))
    if as_of is not None and previous_as_of is not None and previous_as_of < as_of and settings_row is not None:
        crossed = Q(
            joined_at__gte=previous_as_of - timedelta(days=settings_row.new_member_days),
            joined_at__lt=as_of - timedelta(days=settings_row.new_member_days),
        )
        for days in {settings_row.at_risk_days, settings_row.churned_days, settings_row.silent_days}:
            low, high = previous_as_of - timedelta(days=days), as_of - timedelta(days=days)
            crossed |= Q(last_active_at__gte=low, last_active_at__lt=high)
            crossed |= Q(last_active_at__isnull=True, joined_at__gte=low, joined_at__lt=high)
        ids.update(Member.objects.filter(crossed).values_list("pk", flat=True))
    return sorted(ids)


def _chunks(ids: list[int], size: int) -> Iterator[tuple[int, ...]]:
    for start in range(0, len(ids), size):
        yield tuple(ids[start : start + size])


def layers_recompute_incremental(
    *, now: datetime | None = None, progress: Progress | None = None, started_by=None
) -> LayerJobRun | None:
    """Recompute the members with new events since the last run, with the last full run's cut points.

    Falls back to a full run when none has succeeded yet; returns None (and does nothing) while
    a full run is under way, since its results will include these members.
    """
    succeeded = LayerJobRun.objects.filter(status=LayerJobRun.Status.SUCCEEDED)
    base = succeeded.filter(kind=LayerJobRun.Kind.FULL).order_by("-started_at", "-id").first()
    if base is None:
        return layers_recompute_full(now=now, progress=progress, started_by=started_by)
    running_full = LayerJobRun.objects.filter(
        kind=LayerJobRun.Kind.FULL, status=LayerJobRun.Status.RUNNING, heartbeat_at__gte=timezone.now() - STUCK_AFTER
    )
    if running_full.exists():
        logger.info("incremental layer run skipped: a full run is under way")
        return None
    last = succeeded.exclude(kind=LayerJobRun.Kind.SEGMENTS).order_by("-started_at", "-id").first()
    now = now or timezone.now()
    run = _run_start(kind=LayerJobRun.Kind.INCREMENTAL, as_of=now, started_by=started_by)
    try:
        ctx = Context(run=run, settings=LayerSettings.load(), now=now or timezone.now())
        ids = changed_member_ids(
            since_event_id=last.last_event_id or 0,
            since=last.started_at,
            as_of=ctx.now,
            previous_as_of=last.events_until,
            settings_row=ctx.settings,
        )
        # Members whose windowed figures changed as the windows moved (an event left one).
        ids = sorted(set(ids).union(_windows_advance(ctx, progress=progress)))
        scopes = [Scope(ids=chunk) for chunk in _chunks(ids, IDS_SLICE)]
        run.total = len(scopes) + 1
        run.cut_points = base.cut_points
        run.model_params = base.model_params
        LayerJobRun.objects.filter(pk=run.pk).update(
            total=run.total, cut_points=run.cut_points, model_params=run.model_params
        )
        from members.churn_model import BgNbdParams

        model = BgNbdParams.from_dict(base.model_params) if base.model_params else None
        rfm_cuts = base.cut_points.get("rfm", {})
        layer_cuts = base.cut_points.get("layers", {})
        for scope in scopes:
            with transaction.atomic():
                _draft_raw(ctx, scope)
            _checkpoint(run, step="changed members", advance=1, progress=progress)
        _publish(ctx, scopes, rfm_cuts, layer_cuts, model)
        if progress is not None:
            progress(run)
    except BaseException as error:
        _run_fail(run, error)
        if isinstance(error, RunSuperseded):
            return run
        raise
    return run


def layer_run_latest(kind: str | None = None) -> LayerJobRun | None:
    runs = LayerJobRun.objects.all()
    if kind:
        runs = runs.filter(kind=kind)
    return runs.order_by("-started_at", "-id").first()


def layer_settings_update(*, settings_row: LayerSettings, fields: dict, actor=None) -> LayerSettings:
    """Change thresholds; they apply from the next run."""
    for name, value in fields.items():
        setattr(settings_row, name, value)
    settings_row.full_clean()
    settings_row.save(update_fields=[*fields, "updated_at"])
    logger.info("layer settings changed actor=%s fields=%s", getattr(actor, "pk", None), sorted(fields))
    return settings_row
