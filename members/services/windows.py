"""Windowed figures on Member: kept current at ingest, moved forward by the layer runs.

Member carries, per member, the purchases and net spend of the RFM window, the first purchase in
it, the purchases of the trend period, the live streams watched in the fan period and the
interactions of each sub-kind in the content-preference period. Each window has a start in the
one EventWindows row; ingest (members/services/events.py) adds an event to a window's figures
when it occurred at or after that start, in the UPDATE … FROM that already keeps the rollups.

A layer run at time T calls `event_windows_advance(now=T)`: each start moves to T minus the
window's length, and one UPDATE … FROM over the events between the old and the new start (an
index range scan of `occurred_at`: a day of events for the nightly run, an hour for the hourly
one) subtracts those that left the window (or adds those that re-enter when T goes back).
Events after T are in the figures; the run subtracts them itself (a range scan, usually empty).

`event_windows_rebuild` recomputes every member's figures from the events: when a window's length
changed, before the figures were ever built, or after a rebuild was interrupted. It is recorded
on the EventWindows row (when, why). The nightly rollup rebuild (`member_rollups_rebuild`) also
recomputes the figures exactly, range by range, so any drift is repaired every night.

Concurrency: ingest holds a shared advisory lock from the rollup UPDATE to its commit, moving
the starts takes it exclusively, so no event is counted against a start that moved meanwhile.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from members.models import EventKind, InteractionKind, Member, MemberEvent
from members.models_layers import EventWindows, LayerSettings

logger = logging.getLogger(__name__)

# pg advisory lock: shared by ingest and the rebuild of a range, exclusive while starts move.
WINDOWS_LOCK_KEY = 4_104_002

MEMBER = Member._meta.db_table
EVENT = MemberEvent._meta.db_table
STATE = EventWindows._meta.db_table
PURCHASE, REFUND, INTERACTION = EventKind.PURCHASE.value, EventKind.REFUND.value, EventKind.INTERACTION.value
LIVE_WATCH = InteractionKind.LIVE_WATCH.value
# One counter column per interaction sub-kind, in name order (the preference tie-break).
PREFERENCE_COLUMNS = {kind: f"interactions_{kind}" for kind in sorted(InteractionKind.values)}

# window name -> (EventWindows start column, its length column, LayerSettings field)
WINDOWS = {
    "rfm": ("rfm_start", "rfm_days", "rfm_window_days"),
    "trend": ("trend_start", "trend_days", "trend_days"),
    "live": ("live_start", "live_days", "live_lover_days"),
    "preference": ("preference_start", "preference_days", "content_preference_days"),
}


def _pg() -> bool:
    return connection.vendor == "postgresql"


def _dt(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def lock_windows_shared() -> None:
    """Called inside a transaction that counts events against the starts (ingest, range rebuild)."""
    if _pg():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [WINDOWS_LOCK_KEY])


def _lock_windows_exclusive() -> None:
    if _pg():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [WINDOWS_LOCK_KEY])


# Each figure and the window it belongs to.
FIGURE_WINDOWS = {
    "window_orders": "rfm",
    "window_spent": "rfm",
    "window_first_purchase_at": "rfm",
    "trend_orders": "trend",
    "live_watches": "live",
    **{column: "preference" for column in PREFERENCE_COLUMNS.values()},
}


def window_aggregates(conditions: dict[str, str], *, alias: str = "e") -> dict[str, str]:
    """SQL aggregate of each windowed figure over the events `alias`; `conditions[window]` is the
    SQL condition for an event to count in that window."""
    e = alias
    purchase = f"{e}.kind = '{PURCHASE}'"
    spent = (
        f"CASE WHEN {e}.kind = '{PURCHASE}' THEN COALESCE({e}.amount, 0) "
        f"WHEN {e}.kind = '{REFUND}' THEN -COALESCE({e}.amount, 0) ELSE 0 END"
    )
    live = f"{e}.kind = '{INTERACTION}' AND {e}.sub_kind = '{LIVE_WATCH}'"
    rfm, trend = conditions["rfm"], conditions["trend"]
    figures = {
        "window_orders": f"SUM(CASE WHEN {purchase} AND {rfm} THEN 1 ELSE 0 END)",
        "window_spent": f"SUM(CASE WHEN {rfm} THEN {spent} ELSE 0 END)",
        "window_first_purchase_at": f"MIN(CASE WHEN {purchase} AND {rfm} THEN {e}.occurred_at END)",
        "trend_orders": f"SUM(CASE WHEN {purchase} AND {trend} THEN 1 ELSE 0 END)",
        "live_watches": f"SUM(CASE WHEN {live} AND {conditions['live']} THEN 1 ELSE 0 END)",
    }
    for kind, column in PREFERENCE_COLUMNS.items():
        interaction = f"{e}.kind = '{INTERACTION}' AND {e}.sub_kind = '{kind}'"
        figures[column] = f"SUM(CASE WHEN {interaction} AND {conditions['preference']} THEN 1 ELSE 0 END)"
    return figures


def ingest_window_starts(alias: str = "e", state: str = "w") -> dict[str, str]:
    """Conditions for ingest and rebuild: the event is at or after the recorded start (no start
    recorded yet: never; the first run rebuilds the figures)."""
    return {name: f"{alias}.occurred_at >= {state}.{start}" for name, (start, _len, _field) in WINDOWS.items()}


def _earlier(column: str, candidate: str) -> str:
    return (
        f"CASE WHEN {candidate} IS NOT NULL AND ({column} IS NULL OR {candidate} < {column}) "
        f"THEN {candidate} ELSE {column} END"
    )


def window_set_clause(member: str, d: str = "d") -> str:
    """SET clause adding the aggregates `d` to the member's windowed figures (ingest)."""
    parts = []
    for column in window_aggregates(ingest_window_starts()):
        if column == "window_first_purchase_at":
            parts.append(f"{column} = {_earlier(f'{member}.{column}', f'{d}.{column}')}")
        else:
            parts.append(f"{column} = {member}.{column} + {d}.{column}")
    return ",\n            ".join(parts)


@dataclass(frozen=True)
class WindowsResult:
    rebuilt: bool
    members: list[int]  # members whose figures the move changed (empty after a rebuild)


def _targets(settings_row: LayerSettings, now: datetime) -> dict[str, tuple[datetime, int]]:
    return {
        name: (now - timedelta(days=getattr(settings_row, field)), getattr(settings_row, field))
        for name, (_start, _len, field) in WINDOWS.items()
    }


def event_windows_advance(*, now: datetime, settings_row: LayerSettings | None = None) -> WindowsResult:
    """Move every window to end at `now`; rebuild instead when a length changed or none was built."""
    settings_row = settings_row or LayerSettings.load()
    targets = _targets(settings_row, now)
    with transaction.atomic():
        _lock_windows_exclusive()
        state = EventWindows.objects.select_for_update().filter(pk=1).first()
        reason = _rebuild_reason(state, targets)
        if reason is None:
            members = _move_starts(state, targets)
            return WindowsResult(rebuilt=False, members=members)
    event_windows_rebuild(now=now, settings_row=settings_row, reason=reason)
    return WindowsResult(rebuilt=True, members=[])


def _rebuild_reason(state: EventWindows | None, targets: dict) -> str | None:
    if state is None:
        return "first build"
    if not state.ready:
        return "previous rebuild unfinished"
    for name, (_start, length_column, _field) in WINDOWS.items():
        if getattr(state, length_column) != targets[name][1]:
            return f"{name} window length changed"
    return None


def _move_starts(state: EventWindows, targets: dict) -> list[int]:
    """Subtract the events between each old and new start (or add them back when the start moves
    back), in one UPDATE … FROM; returns the members whose figures changed."""
    conditions, ranges, params = {}, [], {}
    for name, (start_column, _len, _field) in WINDOWS.items():
        old, new = getattr(state, start_column), targets[name][0]
        low, high = (old, new) if old <= new else (new, old)
        params[f"{name}_low"], params[f"{name}_high"] = _dt(low), _dt(high)
        conditions[name] = f"e.occurred_at >= %({name}_low)s AND e.occurred_at < %({name}_high)s"
        ranges.append(f"({conditions[name]})")
        params[f"{name}_sign"] = -1 if old <= new else 1
    aggregates = window_aggregates(conditions)
    sets = []
    for column, _aggregate in aggregates.items():
        if column == "window_first_purchase_at":
            continue
        sets.append(f"{column} = {MEMBER}.{column} + %({FIGURE_WINDOWS[column]}_sign)s * d.{column}")
    if params["rfm_sign"] < 0:
        # A purchase left the window: the first purchase in it is looked up again for that member
        # only (memberevent_member_time_idx), the others keep theirs.
        first = f"""CASE WHEN d.window_orders > 0 THEN (
                SELECT MIN(f.occurred_at) FROM {EVENT} f
                WHERE f.member_id = {MEMBER}.id AND f.kind = '{PURCHASE}' AND f.occurred_at >= %(rfm_high)s)
            ELSE {MEMBER}.window_first_purchase_at END"""
    else:
        first = _earlier(f"{MEMBER}.window_first_purchase_at", "d.window_first_purchase_at")
    sets.append(f"window_first_purchase_at = {first}")
    selected = ", ".join(f"{aggregate} AS {column}" for column, aggregate in aggregates.items())
    # Only the kinds the figures count are read, and only members whose figures move are
    # rewritten: a member with a check-in (or an interaction outside its window's range) at a
    # boundary keeps its row, and is not recomputed by an incremental run for it.
    moved = " OR ".join(f"d.{column} <> 0" for column in aggregates if column != "window_first_purchase_at")
    with connection.cursor() as cursor:
        if _pg():
            # Priced above PostgreSQL's JIT thresholds at a million members, where compiling the
            # statement cost 0.8 s of CPU, a quarter of the move (inside the caller's transaction).
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            # No alias for the updated table: SQLite's UPDATE … FROM does not take one.
            f"""UPDATE {MEMBER} SET {", ".join(sets)}
                FROM (SELECT e.member_id, {selected} FROM {EVENT} e
                      WHERE ({" OR ".join(ranges)}) AND e.kind IN ('{PURCHASE}', '{REFUND}', '{INTERACTION}')
                      GROUP BY e.member_id) AS d
                WHERE {MEMBER}.id = d.member_id AND ({moved})
                RETURNING {MEMBER}.id""",
            params,
        )
        members = [row[0] for row in cursor.fetchall()]
    now = timezone.now()
    for name, (start_column, _len, _field) in WINDOWS.items():
        setattr(state, start_column, targets[name][0])
    state.advanced_at = now
    state.save()
    logger.info("event windows moved members=%s", len(members))
    return members


def event_windows_rebuild(*, now: datetime, settings_row: LayerSettings | None = None, reason: str = "") -> int:
    """Recompute every member's windowed figures from the events for windows ending at `now`."""
    from members.selectors import member_id_ranges
    from members.services.events import member_rollups_rebuild

    settings_row = settings_row or LayerSettings.load()
    targets = _targets(settings_row, now)
    with transaction.atomic():
        _lock_windows_exclusive()
        state = EventWindows.objects.select_for_update().filter(pk=1).first() or EventWindows(pk=1)
        for name, (start_column, length_column, _field) in WINDOWS.items():
            setattr(state, start_column, targets[name][0])
            setattr(state, length_column, targets[name][1])
        state.ready = False
        state.rebuild_reason = reason[:255]
        state.save()
    logger.info("event windows rebuild started reason=%s", reason)
    written = sum(member_rollups_rebuild(first_id=first, last_id=last) for first, last in member_id_ranges())
    with transaction.atomic():
        _lock_windows_exclusive()
        state = EventWindows.objects.select_for_update().get(pk=1)
        if all(getattr(state, WINDOWS[name][0]) == targets[name][0] for name in WINDOWS):
            state.ready = True
            state.rebuilt_at = timezone.now()
            state.save(update_fields=["ready", "rebuilt_at"])
    logger.info("event windows rebuilt members=%s", written)
    return written
