"""Ingest of the behaviour log and the rollups it keeps on Member.

Both paths are set-based: a batch is one INSERT … ON CONFLICT DO NOTHING RETURNING id, then one
UPDATE … FROM (aggregate over the new rows) per batch. The nightly rebuild runs the same
aggregate over every event of a range of members. The same statement keeps the windowed figures
of the layer runs (orders and spend in the RFM window, interactions per sub-kind, …; see
members/services/windows.py).

On PostgreSQL a large batch reaches the server by COPY into a temporary staging table: a
multi-row VALUES statement with nine parameters per event spends most of its time having its
parameters bound and parsed (docs/PERFORMANCE.md, "Event ingest"). The rows it records are also
copied to a second temporary table, from which the rollups are computed: the event table is not
read again (PostgreSQL, lacking statistics on a table that grows by the batch, read all of it to
find a batch's ids). When the input spans several batches, a worker thread sorts and encodes the
next batch while the server works on the current one (the thread never touches the database).
"""

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.dispatch import Signal

from members.models import ACTIVE_KINDS, INTERACTION_KINDS, EventKind, EventWindows, Member, MemberEvent
from members.services.windows import ingest_window_starts, lock_windows_shared, window_aggregates, window_set_clause

# The post-ingest hook: sent once the transaction that recorded new events commits, with
# `event_ids`, the ids of the events recorded (replays excluded). Other apps connect to it in
# their AppConfig.ready (loyalty earns points from it), so this module imports none of them.
# Sent with send_robust: a failing receiver is logged and never fails the ingest.
events_recorded = Signal()

# Events per transaction. Larger batches update each member's rollups once for more events
# (member rows carry many indexes, so an UPDATE of one costs several times an event INSERT):
# with bench_ingest's feed 0.22 member rows per event at 50,000, 0.14 at 100,000. A batch locks
# its members only at its end, for the rollup UPDATE and the commit.
INGEST_BATCH_SIZE = 100_000
# Batches from 500 events on, such as a partner's request of 1,000, go in by COPY into a staging
# table; smaller ones as multi-row INSERTs, three statements (staging table, COPY, TRUNCATE) fewer.
# Binding nine parameters per event costs psycopg more than those statements from a few hundred
# events on: the partner API's batches of 1,000 went from ~9,000 to ~14,500 events/s (bench_api).
# Each INSERT stays under SQLite's limit of 32,766 parameters.
ROWS_PER_INSERT = 2_000
COPY_MIN_ROWS = 500
_COLUMNS = "member_id, kind, sub_kind, amount, occurred_at, source, external_id, payload"
_STAGING_TABLE = "memberevent_ingest_staging"
# The rows of the batch that were recorded (replays left out), with what the rollups read.
_NEW_TABLE = "memberevent_ingest_new"
_NEW_COLUMNS = "id, member_id, kind, sub_kind, amount, occurred_at, source, external_id"
# One encoder for every payload: json.dumps(..., ensure_ascii=False) builds a new one per call.
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class EventInput:
    member_id: int
    kind: str
    occurred_at: datetime
    source: str
    external_id: str
    sub_kind: str = ""
    amount: Decimal | None = None
    payload: dict = field(default_factory=dict)


@dataclass(slots=True)
class IngestResult:
    created: int = 0
    duplicates: int = 0
    # (source, external_id) of the events recorded by this call; replays are not in it.
    created_keys: set[tuple[str, str]] = field(default_factory=set)


def events_ingest(*, events: Iterable[EventInput], batch_size: int = INGEST_BATCH_SIZE) -> IngestResult:
    """Record events idempotently and bring the members' rollups up to date.

    An event already recorded (same source and external_id) is counted as a duplicate and
    changes nothing, so partners may safely replay a batch. Each batch commits on its own.
    """
    result = IngestResult()
    copy = connection.vendor == "postgresql"
    with contextlib.closing(_staged(_batches(events, batch_size), copy=copy)) as batches:
        for staged in batches:
            _ingest_batch(staged, result)
    return result


def _batches(events: Iterable[EventInput], batch_size: int) -> Iterator[list[EventInput]]:
    batch: list[EventInput] = []
    for event in events:
        batch.append(event)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _staged(batches: Iterator[list[EventInput]], *, copy: bool) -> Iterator["_StagedBatch"]:
    """Each batch staged; the next one in a worker thread while the caller ingests the current one."""
    current = next(batches, None)
    if current is None:
        return
    staged = _stage(current, copy=copy)
    following = next(batches, None)
    if following is None:
        yield staged
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-ingest") as worker:
        while following is not None:
            upcoming = worker.submit(_stage, following, copy=copy)
            yield staged
            staged = upcoming.result()
            following = next(batches, None)
        yield staged


@dataclass(frozen=True, slots=True)
class _StagedBatch:
    events: list[EventInput]
    copy_data: bytes | None  # the events as COPY text, for a batch that goes in by COPY


def _stage(batch: list[EventInput], *, copy: bool) -> _StagedBatch:
    """The batch sorted and, when it goes in by COPY, encoded. No database access here: all but
    the first batch are staged in the worker thread."""
    # Concurrent batches take their locks in one order (unique keys, then member rows), so two
    # partners replaying overlapping batches wait for each other instead of deadlocking.
    events = sorted(batch, key=lambda event: (event.source, event.external_id))
    if not copy or len(events) < COPY_MIN_ROWS:
        return _StagedBatch(events, None)
    return _StagedBatch(events, "".join(map(_copy_line, events)).encode())


# COPY's text format: columns separated by tabs, rows ended by newlines, NULL as \N; a backslash,
# tab, newline or carriage return in a value is escaped with a backslash. The text columns of a
# row are joined with NUL and escaped in one pass, NUL becoming the tab between them (PostgreSQL
# text cannot hold NUL, so none comes from a value: one would make the row one column too long,
# which COPY rejects).
_COPY_COLUMNS = "member_id, amount, occurred_at, kind, sub_kind, source, external_id, payload"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\t"})
_COPY_NULL = "\\N"


def _copy_line(event: EventInput) -> str:
    amount = _COPY_NULL if event.amount is None else event.amount
    texts = "\0".join(
        (
            event.kind,
            event.sub_kind or "",
            event.source,
            event.external_id,
            _encode_json(event.payload) if event.payload else "{}",
        )
    )
    return f"{event.member_id}\t{amount}\t{event.occurred_at.isoformat()}\t{texts.translate(_COPY_ESCAPES)}\n"


def _ingest_batch(staged: _StagedBatch, result: IngestResult) -> None:
    batch = staged.events
    with transaction.atomic():
        if staged.copy_data is not None:
            rows = _ingest_copy(staged.copy_data)
        else:
            rows = _ingest_values(batch)
    if rows:
        event_ids = [row[0] for row in rows]
        transaction.on_commit(lambda: events_recorded.send_robust(sender=MemberEvent, event_ids=event_ids))
    result.created += len(rows)
    result.duplicates += len(batch) - len(rows)
    result.created_keys.update((source, external_id) for _, source, external_id in rows)


def _ingest_values(batch: Sequence[EventInput]) -> list[tuple[int, str, str]]:
    rows = []
    for start in range(0, len(batch), ROWS_PER_INSERT):
        rows += _insert_events_values(batch[start : start + ROWS_PER_INSERT])
    if rows:
        event_ids = [row[0] for row in rows]
        if connection.vendor == "postgresql":
            # An array literal built here: psycopg's list adapter checks every element with a regex.
            where, params = "e.id = ANY(%s::bigint[])", ["{" + ",".join(map(str, event_ids)) + "}"]
        else:
            # One JSON parameter instead of one per id: a batch may exceed SQLite's parameter limit.
            where, params = "e.id IN (SELECT value FROM json_each(%s))", [json.dumps(event_ids)]
        _apply_rollups(MemberEvent._meta.db_table, where, params)
    return rows


def _ingest_copy(copy_data: bytes) -> list[tuple[int, str, str]]:
    table = MemberEvent._meta.db_table
    with connection.cursor() as cursor:
        # Two temporary tables per session, created on first use. They are emptied at the end of
        # the batch rather than ON COMMIT, because batches may share a caller's transaction.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING_TABLE} (member_id bigint, kind text, sub_kind text, "
            "amount numeric, occurred_at timestamptz, source text, external_id text, payload jsonb)"
        )
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_NEW_TABLE} (id bigint, member_id bigint, kind text, "
            "sub_kind text, amount numeric, occurred_at timestamptz, source text, external_id text)"
        )
        with cursor.copy(f"COPY {_STAGING_TABLE} ({_COPY_COLUMNS}) FROM STDIN") as copy:
            copy.write(copy_data)
        # Rows go in in COPY order, the sorted order _stage locks in: a temporary table has
        # no index and is read front to back, never in parallel or from a synchronized scan's
        # midpoint. (An ORDER BY would cost a tenth of the insert.)
        cursor.execute(
            f"WITH recorded AS (INSERT INTO {table} ({_COLUMNS}, recorded_at) "
            f"SELECT {_COLUMNS}, %s FROM {_STAGING_TABLE} "
            f"ON CONFLICT (source, external_id) DO NOTHING RETURNING {_NEW_COLUMNS}) "
            f"INSERT INTO {_NEW_TABLE} ({_NEW_COLUMNS}) SELECT {_NEW_COLUMNS} FROM recorded "
            "RETURNING id, source, external_id",
            [_now()],
        )
        rows = cursor.fetchall()
        if rows:
            _apply_rollups(_NEW_TABLE, "TRUE", [])
        cursor.execute(f"TRUNCATE {_STAGING_TABLE}, {_NEW_TABLE}")
    return rows


def _insert_events_values(batch: Sequence[EventInput]) -> list[tuple[int, str, str]]:
    table = MemberEvent._meta.db_table
    ops = connection.ops
    json_placeholder = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    row_sql = f"(%s, %s, %s, %s, %s, %s, %s, {json_placeholder}, %s)"
    recorded_at = ops.adapt_datetimefield_value(_now())
    params: list = []
    for event in batch:
        params += [
            event.member_id,
            event.kind,
            event.sub_kind or "",
            ops.adapt_decimalfield_value(event.amount, 12, 2) if event.amount is not None else None,
            ops.adapt_datetimefield_value(event.occurred_at),
            event.source,
            event.external_id,
            _encode_json(event.payload) if event.payload else "{}",
            recorded_at,
        ]
    sql = (
        f"INSERT INTO {table} ({_COLUMNS}, recorded_at) VALUES {', '.join([row_sql] * len(batch))} "
        "ON CONFLICT (source, external_id) DO NOTHING RETURNING id, source, external_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def _kinds_sql(kinds: Iterable[str]) -> str:
    # The kinds are our own enum values, never user input, so inlining them is safe.
    return ", ".join(f"'{kind}'" for kind in sorted(kinds))


def _rollup_aggregate_sql(where: str, events: str = MemberEvent._meta.db_table) -> str:
    """SELECT member_id, its rollups and its windowed figures over the events `e` (of the table
    `events`) matching `where`.

    An event counts in a window when it occurred at or after the window's start in the one
    EventWindows row (members/services/windows.py); before any start is recorded, in none.
    """
    purchase, refund, check_in = EventKind.PURCHASE.value, EventKind.REFUND.value, EventKind.CHECK_IN.value
    windowed = ",\n               ".join(
        f"{aggregate} AS {column}" for column, aggregate in window_aggregates(ingest_window_starts()).items()
    )
    return f"""
        SELECT e.member_id,
               MAX(CASE WHEN e.kind IN ({_kinds_sql(ACTIVE_KINDS)}) THEN e.occurred_at END) AS last_active,
               MAX(CASE WHEN e.kind IN ({_kinds_sql(INTERACTION_KINDS)}) THEN e.occurred_at END) AS last_interaction,
               MAX(CASE WHEN e.kind = '{purchase}' THEN e.occurred_at END) AS last_purchase,
               MAX(CASE WHEN e.kind = '{check_in}' THEN e.occurred_at END) AS last_check_in,
               SUM(CASE WHEN e.kind = '{purchase}' THEN 1 ELSE 0 END) AS orders,
               SUM(CASE WHEN e.kind = '{purchase}' THEN COALESCE(e.amount, 0)
                        WHEN e.kind = '{refund}' THEN -COALESCE(e.amount, 0) ELSE 0 END) AS spent,
               {windowed}
        FROM {events} e LEFT JOIN {EventWindows._meta.db_table} w ON w.id = 1
        WHERE {where}
        GROUP BY e.member_id
    """


def _later(column: str, candidate: str) -> str:
    """SQL for the later of a nullable column and a nullable candidate (portable GREATEST)."""
    return (
        f"CASE WHEN {candidate} IS NOT NULL AND ({column} IS NULL OR {candidate} > {column}) "
        f"THEN {candidate} ELSE {column} END"
    )


def _apply_rollups(events: str, where: str, params: list) -> None:
    """Add the new events `e` of the table `events` matching `where` to their members' rollups."""
    member = Member._meta.db_table
    # The windows' starts stay put until this transaction commits (windows.py moves them).
    lock_windows_shared()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {member} WHERE id IN (SELECT e.member_id FROM {events} e "
                f"WHERE {where}) ORDER BY id FOR NO KEY UPDATE",
                params,
            )
    sql = f"""
        UPDATE {member} SET
            last_active_at = {_later(f"{member}.last_active_at", "d.last_active")},
            last_interaction_at = {_later(f"{member}.last_interaction_at", "d.last_interaction")},
            last_purchase_at = {_later(f"{member}.last_purchase_at", "d.last_purchase")},
            last_check_in_at = {_later(f"{member}.last_check_in_at", "d.last_check_in")},
            orders_count = {member}.orders_count + d.orders,
            total_spent = {member}.total_spent + d.spent,
            {window_set_clause(member)}
        FROM ({_rollup_aggregate_sql(where, events)}) AS d
        WHERE {member}.id = d.member_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def member_rollups_rebuild(*, first_id: int, last_id: int) -> int:
    """Recompute the rollups and windowed figures of members first_id..last_id exactly from their events.

    Returns the number of member rows written. Members without events get empty rollups. The
    range's member rows are locked first, so an ingest committing meanwhile is either in the
    events read here or waits and adds its events to the rebuilt figures.
    """
    member = Member._meta.db_table
    event = MemberEvent._meta.db_table
    columns = list(window_aggregates(ingest_window_starts()))
    windowed = ", ".join(f"{column} = d.{column}" for column in columns)
    emptied = ", ".join(f"{column} = NULL" if column.endswith("_at") else f"{column} = 0" for column in columns)
    nonzero = " OR ".join(f"{column} <> 0" for column in columns if not column.endswith("_at"))
    with transaction.atomic(), connection.cursor() as cursor:
        lock_windows_shared()
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT 1 FROM {member} WHERE id BETWEEN %s AND %s ORDER BY id FOR NO KEY UPDATE",
                [first_id, last_id],
            )
        cursor.execute(
            f"""
            UPDATE {member} SET
                last_active_at = d.last_active,
                last_interaction_at = d.last_interaction,
                last_purchase_at = d.last_purchase,
                last_check_in_at = d.last_check_in,
                orders_count = d.orders,
                total_spent = d.spent,
                {windowed}
            FROM ({_rollup_aggregate_sql("e.member_id BETWEEN %s AND %s")}) AS d
            WHERE {member}.id = d.member_id
            """,
            [first_id, last_id],
        )
        written = cursor.rowcount
        cursor.execute(
            f"""
            UPDATE {member} SET last_active_at = NULL, last_interaction_at = NULL,
                   last_purchase_at = NULL, last_check_in_at = NULL, orders_count = 0, total_spent = 0, {emptied}
            WHERE id BETWEEN %s AND %s
              AND (orders_count <> 0 OR total_spent <> 0 OR last_active_at IS NOT NULL
                   OR window_first_purchase_at IS NOT NULL OR {nonzero})
              AND NOT EXISTS (SELECT 1 FROM {event} e WHERE e.member_id = {member}.id)
            """,
            [first_id, last_id],
        )
        return written + cursor.rowcount
