"""Imports of members and behaviour events from CSV or XLSX files, and the ImportJob that runs one.

Rules (the same for the admin, the management commands and the background task):
- Members are matched on their member number (external_id), or on their phone when a row has no
  number. A row with a number that no member has yet, whose phone belongs to a member without a
  number, gives that member the number. Blank cells leave the member's value as it is.
- A file that repeats a member (same number, or same phone for rows without one) keeps the last
  row; the others count as duplicates. Event rows repeating a (source, event id) do the same,
  and events already recorded count as duplicates.
- An invalid row (bad cell, a phone that belongs to another member, an unknown member on an event
  row, …) is reported with its line, column, value and reason. By default one invalid row means
  nothing is written; with `skip_invalid` the valid rows are written and the invalid ones come
  back as a file to correct and import again. `dry_run` does everything and rolls it back.
- created + updated + unchanged + duplicates + invalid = the file's rows: nothing is dropped.

Speed: a member file is normalized in Python (cheap fast paths in members.importing), loaded into
a temporary staging table (COPY on PostgreSQL, executemany elsewhere), then matched, checked and
upserted with a handful of set-based statements. One transaction covers a file's writes, so the
default mode is all-or-nothing; progress is saved before it, while the file is being read.
"""

import logging
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from time import monotonic

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from crm.core.exceptions import ApplicationError
from members import importing
from members.importing import CellError, Columns, Table
from members.models import ImportJob, Member
from members.selectors import member_ids_by_external_id
from members.services.events import EventInput, events_ingest

logger = logging.getLogger(__name__)

# A running job that has not saved progress for this long lost its worker (see the beat schedule).
IMPORT_STALE_AFTER = timedelta(minutes=15)
# Progress is saved at most this often, so a 100,000-row file costs a handful of small writes.
PROGRESS_SAVE_SECONDS = 1.0
# Serializes member imports with each other on PostgreSQL; an arbitrary constant of ours.
_MEMBER_IMPORT_LOCK = 0x6D656D62


@dataclass
class ImportResult:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    errors: list[CellError] = field(default_factory=list)
    # Invalid rows and no skip_invalid: nothing was written.
    rejected: bool = False
    columns: Columns | None = None

    @property
    def invalid(self) -> int:
        return len({error.line for error in self.errors})

    def reasons_by_line(self) -> dict[int, str]:
        reasons: dict[int, list[str]] = {}
        for error in self.errors:
            reasons.setdefault(error.line, []).append(f"{error.column}: {error.reason}")
        return {line: "; ".join(parts) for line, parts in reasons.items()}


ProgressCallback = Callable[[int], None]
FinishCallback = Callable[[ImportResult], None]


# ---------------------------------------------------------------------------------------------
# Members

# Positions in a normalized member row: (line, *importing.MEMBER_FIELDS).
_LINE, _EXTERNAL_ID, _PHONE = 0, 1, 2
_STAGE = "import_member_stage"
# Column type of the staging table, and the type psycopg sends in a binary COPY.
_STAGE_TYPES = {
    "external_id": ("varchar(64)", "varchar"),
    "phone": ("varchar(128)", "varchar"),
    "name": ("varchar(100)", "varchar"),
    "email": ("varchar(254)", "varchar"),
    "gender": ("varchar(16)", "varchar"),
    "birthday": ("date", "date"),
    "city": ("varchar(64)", "varchar"),
    "channel": ("varchar(32)", "varchar"),
    "joined_at": ("timestamptz", "timestamptz"),
    "sms_opt_out": ("boolean", "bool"),
    "email_opt_out": ("boolean", "bool"),
    "wecom_opt_out": ("boolean", "bool"),
    "notes": ("text", "text"),
}


def members_import(
    *,
    table: Table,
    dry_run: bool = False,
    skip_invalid: bool = False,
    on_progress: ProgressCallback | None = None,
    finish: FinishCallback | None = None,
) -> ImportResult:
    """Upsert the members of a file (see the module's rules); `finish` runs inside its transaction."""
    columns = importing.member_columns(table.headers)
    parsed = importing.parse_member_rows(
        table, columns, tz=timezone.get_current_timezone(), today=timezone.localdate(), on_progress=on_progress
    )
    rows, duplicates, errors = _members_dedupe(parsed.rows, columns)
    result = ImportResult(total=parsed.total, duplicates=duplicates, columns=columns)
    with transaction.atomic():
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_MEMBER_IMPORT_LOCK])
            stage = _MemberStage()
            stage.load(rows)
            result.duplicates += stage.match()
            conflicts = stage.phone_conflicts(columns)
            result.errors = sorted(parsed.errors + errors + conflicts, key=lambda error: error.line)
            result.rejected = bool(result.errors) and not skip_invalid
            if not result.rejected:
                if conflicts:
                    stage.discard_phone_conflicts()
                result.created, result.updated, result.unchanged = stage.write()
            stage.drop()
            if result.rejected or dry_run:
                transaction.set_rollback(True)
        if finish is not None:
            finish(result)
    return result


def _members_dedupe(rows: list[tuple], columns: Columns) -> tuple[list[tuple], int, list[CellError]]:
    """Keep the last row of each member of the file; report rows giving one phone to two members.

    Returns the kept rows in file order, how many rows were repeats, and the phone errors.
    """
    # A row without a number but with the phone of a numbered row is that member again.
    number_by_phone: dict[str, str] = {}
    for row in rows:
        if row[_EXTERNAL_ID] is not None and row[_PHONE] is not None:
            number_by_phone.setdefault(row[_PHONE], row[_EXTERNAL_ID])
    latest: dict[tuple[int, str], tuple] = {}
    for row in rows:
        number = row[_EXTERNAL_ID]
        if number is None:
            number = number_by_phone.get(row[_PHONE])
            if number is not None:
                row = (row[_LINE], number, *row[_PHONE:])
        key = (0, number) if number is not None else (1, row[_PHONE])
        latest[key] = row
    kept = sorted(latest.values())
    first_line_by_phone: dict[str, int] = {}
    valid: list[tuple] = []
    errors: list[CellError] = []
    for row in kept:
        phone = row[_PHONE]
        if phone is not None:
            first_line = first_line_by_phone.setdefault(phone, row[_LINE])
            if first_line != row[_LINE]:
                reason = _("also given on line %(line)d for another member") % {"line": first_line}
                errors.append(CellError(row[_LINE], columns.labels["phone"], phone, str(reason)))
                continue
        valid.append(row)
    return valid, len(rows) - len(kept), errors


class _MemberStage:
    """The file's valid member rows in a temporary table, matched and written set-based."""

    fields = importing.MEMBER_FIELDS

    def __init__(self):
        self.postgres = connection.vendor == "postgresql"
        self.member = connection.ops.quote_name(Member._meta.db_table)
        self.now = timezone.now()

    def _execute(self, sql: str, params: Iterable | None = None) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def load(self, rows: list[tuple]) -> None:
        self._execute(f"DROP TABLE IF EXISTS {_STAGE}")
        if self.postgres:
            columns = ", ".join(f"{name} {_STAGE_TYPES[name][0]}" for name in self.fields)
            self._execute(f"CREATE TEMPORARY TABLE {_STAGE} (line integer, {columns}, member_id bigint)")
            # Binary COPY: about three times cheaper than text on both ends for these rows.
            copy_sql = f"COPY {_STAGE} (line, {', '.join(self.fields)}) FROM STDIN (FORMAT BINARY)"
            with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.set_types(["int4", *(_STAGE_TYPES[name][1] for name in self.fields)])
                for row in rows:
                    copy.write_row(row)
            # Temporary tables are never auto-analyzed; without statistics the joins below
            # would be planned for a handful of rows.
            self._execute(f"ANALYZE {_STAGE}")
        else:
            self._execute(
                f"CREATE TEMPORARY TABLE {_STAGE} (line integer, {', '.join(self.fields)}, member_id integer)"
            )
            adapt_date, adapt_datetime = connection.ops.adapt_datefield_value, connection.ops.adapt_datetimefield_value
            birthday, joined_at = self.fields.index("birthday") + 1, self.fields.index("joined_at") + 1
            placeholders = ", ".join(["%s"] * (len(self.fields) + 1))
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {_STAGE} (line, {', '.join(self.fields)}) VALUES ({placeholders})",
                    [
                        (
                            *row[:birthday],
                            adapt_date(row[birthday]),
                            *row[birthday + 1 : joined_at],
                            adapt_datetime(row[joined_at]),
                            *row[joined_at + 1 :],
                        )
                        for row in rows
                    ],
                )

    def match(self) -> int:
        """Find each row's member; return how many rows turned out to repeat a matched member."""
        member = self.member
        self._execute(
            f"UPDATE {_STAGE} SET member_id = m.id FROM {member} m "
            f"WHERE {_STAGE}.external_id IS NOT NULL AND m.external_id = {_STAGE}.external_id"
        )
        self._execute(
            f"UPDATE {_STAGE} SET member_id = m.id FROM {member} m "
            f"WHERE {_STAGE}.member_id IS NULL AND {_STAGE}.phone IS NOT NULL AND m.phone = {_STAGE}.phone "
            f"AND ({_STAGE}.external_id IS NULL OR m.external_id IS NULL)"
        )
        # A row matched by number and a row without one matched by phone can be the same member.
        return self._execute(
            f"DELETE FROM {_STAGE} WHERE line IN (SELECT line FROM ("
            f"SELECT line, ROW_NUMBER() OVER (PARTITION BY member_id ORDER BY line DESC) AS n "
            f"FROM {_STAGE} WHERE member_id IS NOT NULL) ranked WHERE n > 1)"
        )

    def _conflict_condition(self) -> str:
        return f"m.phone = {_STAGE}.phone AND ({_STAGE}.member_id IS NULL OR m.id <> {_STAGE}.member_id)"

    def phone_conflicts(self, columns: Columns) -> list[CellError]:
        """Rows whose phone belongs to a member other than the one they match."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {_STAGE}.line, {_STAGE}.phone, m.external_id, m.id FROM {_STAGE} "
                f"JOIN {self.member} m ON {self._conflict_condition()} ORDER BY {_STAGE}.line"
            )
            conflicts = cursor.fetchall()
        return [
            CellError(
                line,
                columns.labels["phone"],
                phone,
                str(_("already belongs to member %(member)s") % {"member": number or f"#{member_id}"}),
            )
            for line, phone, number, member_id in conflicts
        ]

    def discard_phone_conflicts(self) -> None:
        self._execute(
            f"DELETE FROM {_STAGE} WHERE EXISTS (SELECT 1 FROM {self.member} m WHERE {self._conflict_condition()})"
        )

    def write(self) -> tuple[int, int, int]:
        """Update the matched members and insert the new ones; return (created, updated, unchanged)."""
        matched = self._scalar(f"SELECT COUNT(*) FROM {_STAGE} WHERE member_id IS NOT NULL")
        updated = self._update()
        created = self._insert()
        return created, updated, matched - updated

    def _scalar(self, sql: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]

    def _distinct(self, left: str, right: str) -> str:
        return f"{left} IS DISTINCT FROM {right}" if self.postgres else f"{left} IS NOT {right}"

    def _update(self) -> int:
        # Blank cells (NULL in the stage) keep the member's value; rows changing nothing are
        # not written, so importing a file twice leaves the second run with nothing to do.
        member = self.member
        assignments = ", ".join(f"{name} = COALESCE(s.{name}, {member}.{name})" for name in self.fields)
        changed = " OR ".join(
            f"(s.{name} IS NOT NULL AND {self._distinct(f'{member}.{name}', f's.{name}')})" for name in self.fields
        )
        return self._execute(
            f"UPDATE {member} SET {assignments}, updated_at = %s FROM {_STAGE} s "
            f"WHERE {member}.id = s.member_id AND ({changed})",
            [self._db_value("updated_at", self.now)],
        )

    def _insert(self) -> int:
        columns, expressions, params = [], [], []
        for model_field in Member._meta.concrete_fields:
            if model_field.primary_key:
                continue
            columns.append(model_field.column)
            if model_field.column in self.fields:
                expressions.append(f"COALESCE({model_field.column}, %s)")
                params.append(self._db_value(model_field.column, self._default(model_field)))
            else:
                # Every other field (rollups, timestamps, fields added later) gets its default.
                expressions.append("%s")
                params.append(self._db_value(model_field.column, self._default(model_field)))
        return self._execute(
            f"INSERT INTO {self.member} ({', '.join(columns)}) "
            f"SELECT {', '.join(expressions)} FROM {_STAGE} WHERE member_id IS NULL ORDER BY line",
            params,
        )

    def _default(self, model_field):
        if getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            return self.now
        return model_field.get_default()

    def _db_value(self, column: str, value):
        return Member._meta.get_field(_field_name(column)).get_db_prep_save(value, connection)

    def drop(self) -> None:
        self._execute(f"DROP TABLE {_STAGE}")


def _field_name(column: str) -> str:
    return next(f.name for f in Member._meta.concrete_fields if f.column == column)


# ---------------------------------------------------------------------------------------------
# Events


def events_import(
    *,
    table: Table,
    dry_run: bool = False,
    skip_invalid: bool = False,
    on_progress: ProgressCallback | None = None,
    finish: FinishCallback | None = None,
) -> ImportResult:
    """Record the events of a file through events_ingest (see the module's rules)."""
    columns = importing.event_columns(table.headers)
    parsed = importing.parse_event_rows(table, columns, tz=timezone.get_current_timezone(), on_progress=on_progress)
    member_ids = member_ids_by_external_id(row[1] for row in parsed.rows)
    errors = list(parsed.errors)
    latest: dict[tuple[str, str], tuple[int, EventInput]] = {}
    known = 0
    for line, member, kind, sub_kind, occurred_at, amount, source, external_id, payload in parsed.rows:
        member_id = member_ids.get(member)
        if member_id is None:
            reason = _("no member has this member number")
            errors.append(CellError(line, columns.labels["member"], member, str(reason)))
            continue
        known += 1
        latest[(source, external_id)] = (
            line,
            EventInput(
                member_id=member_id,
                kind=kind,
                occurred_at=occurred_at,
                source=source,
                external_id=external_id,
                sub_kind=sub_kind or "",
                amount=amount,
                payload=payload or {},
            ),
        )
    result = ImportResult(total=parsed.total, duplicates=known - len(latest), columns=columns)
    result.errors = sorted(errors, key=lambda error: error.line)
    result.rejected = bool(result.errors) and not skip_invalid
    with transaction.atomic():
        with transaction.atomic():
            if not result.rejected:
                in_file_order = sorted(latest.values(), key=lambda line_and_event: line_and_event[0])
                ingested = events_ingest(events=[event for _line, event in in_file_order])
                result.created = ingested.created
                result.duplicates += ingested.duplicates
            if result.rejected or dry_run:
                transaction.set_rollback(True)
        if finish is not None:
            finish(result)
    return result


# ---------------------------------------------------------------------------------------------
# Import jobs


def import_job_create(
    *,
    target: str,
    file: File,
    dry_run: bool = False,
    skip_invalid: bool = False,
    created_by=None,
    inline: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportJob:
    """Store an uploaded file as an ImportJob and run it.

    The file's format and headers are checked at once (ApplicationError). Files of up to
    settings.CRM_IMPORT_INLINE_MAX_ROWS rows run before this returns; larger ones run in the
    background after the caller's transaction commits. `inline` forces one way (the commands
    run inline, with `on_progress(processed, total)` driving their progress bar).
    """
    name = os.path.basename(file.name or "upload")
    data = file.read()
    try:
        table = importing.read_table(data, name)
        (importing.member_columns if target == ImportJob.Target.MEMBERS else importing.event_columns)(table.headers)
        total = table.estimate_rows()
    except importing.TableError as exc:
        raise ApplicationError(exc.message) from exc
    job = ImportJob(
        target=target,
        original_name=name,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        total_rows=total,
        created_by=created_by,
        language=translation.get_language() or "",
    )
    job.full_clean(exclude=["file"])
    job.file.save(name, ContentFile(data), save=False)
    job.save()
    if inline is None:
        inline = total <= settings.CRM_IMPORT_INLINE_MAX_ROWS
    if inline:
        return import_job_run(job_id=job.pk, on_progress=on_progress)
    from members.tasks import run_import_job

    transaction.on_commit(lambda: run_import_job.delay(job.pk))
    return job


class _Superseded(Exception):
    """The job stopped being ours while it ran (reset as stuck); its writes must not commit."""


def import_job_run(*, job_id: int, on_progress: Callable[[int, int], None] | None = None) -> ImportJob:
    """Run a waiting job to the end and record its outcome; a job not waiting is left alone.

    Claiming the job under a row lock makes a second delivery of the same task a no-op. A
    database OperationalError puts the job back to waiting and is raised again for the task to
    retry; any other error marks the job failed.
    """
    job = _import_job_claim(job_id)
    if job is None:
        return ImportJob.objects.get(pk=job_id)
    importer = members_import if job.target == ImportJob.Target.MEMBERS else events_import
    try:
        with translation.override(job.language or settings.LANGUAGE_CODE):
            with job.file.open("rb") as stored:
                table = importing.read_table(stored.read(), job.original_name or job.file.name)
            importer(
                table=table,
                dry_run=job.dry_run,
                skip_invalid=job.skip_invalid,
                on_progress=_JobProgress(job, on_progress),
                finish=lambda result: _import_job_finish(job_id=job_id, table=table, result=result),
            )
    except _Superseded:
        logger.warning("Import job %s was reset while running; its writes were rolled back", job_id)
    except OperationalError:
        _import_job_release(job_id)
        raise
    except importing.TableError as exc:
        _import_job_fail(job_id, exc.message)
    except Exception as exc:
        # The message may quote cell values (names, phones): it goes to the job, which staff
        # see, and only the exception type and stack to the log.
        logger.error(
            "Import job %s failed with %s:\n%s",
            job_id,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        _import_job_fail(job_id, f"{type(exc).__name__}: {exc}"[:2000])
    return ImportJob.objects.get(pk=job_id)


def _import_job_claim(job_id: int) -> ImportJob | None:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status != ImportJob.Status.PENDING:
            return None
        now = timezone.now()
        job.status = ImportJob.Status.RUNNING
        job.started_at = job.heartbeat_at = now
        job.processed_rows = 0
        job.save(update_fields=["status", "started_at", "heartbeat_at", "processed_rows", "updated_at"])
    return job


class _JobProgress:
    """Saves how far the reading got (and that the worker is alive), at most once a second."""

    def __init__(self, job: ImportJob, on_progress: Callable[[int, int], None] | None):
        self.job_id, self.total, self.on_progress = job.pk, job.total_rows, on_progress
        self.saved_at = monotonic()

    def __call__(self, processed: int) -> None:
        if self.on_progress is not None:
            self.on_progress(processed, max(self.total, processed))
        if monotonic() - self.saved_at >= PROGRESS_SAVE_SECONDS:
            ImportJob.objects.filter(pk=self.job_id).update(processed_rows=processed, heartbeat_at=timezone.now())
            self.saved_at = monotonic()


def _import_job_finish(*, job_id: int, table: Table, result: ImportResult) -> None:
    """Record the outcome in the transaction of the rows, so both commit or neither does."""
    job = ImportJob.objects.select_for_update().get(pk=job_id)
    if job.status != ImportJob.Status.RUNNING:
        raise _Superseded
    now = timezone.now()
    job.status = ImportJob.Status.REJECTED if result.rejected else ImportJob.Status.SUCCEEDED
    job.total_rows = job.processed_rows = result.total
    job.created_count, job.updated_count, job.unchanged_count = result.created, result.updated, result.unchanged
    job.duplicate_count, job.invalid_count = result.duplicates, result.invalid
    job.errors = [error.as_dict() for error in result.errors]
    job.ignored_columns = result.columns.ignored
    job.finished_at = job.heartbeat_at = now
    update_fields = [
        "status",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "duplicate_count",
        "invalid_count",
        "errors",
        "ignored_columns",
        "finished_at",
        "heartbeat_at",
        "updated_at",
    ]
    if job.skip_invalid and result.errors:
        stem, extension = os.path.splitext(job.original_name or "import.csv")
        content = importing.invalid_rows_file(table, result.columns, result.reasons_by_line())
        job.invalid_rows_file.save(f"{stem}-invalid{extension or '.csv'}", ContentFile(content), save=False)
        update_fields.append("invalid_rows_file")
    job.save(update_fields=update_fields)


def _import_job_release(job_id: int) -> None:
    """Put a job interrupted by a database error back to waiting, so a retry can claim it."""
    if connection.in_atomic_block:
        return  # the caller's transaction rolls the claim back with everything else
    connection.close_if_unusable_or_obsolete()
    try:
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(
            status=ImportJob.Status.PENDING, processed_rows=0, heartbeat_at=None
        )
    except DatabaseError:
        logger.warning("Import job %s could not be put back to waiting; the stuck-job reset will fail it", job_id)


def _import_job_fail(job_id: int, message: str) -> None:
    now = timezone.now()
    ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(
        status=ImportJob.Status.FAILED, failure=message, finished_at=now, heartbeat_at=now
    )


def import_jobs_fail_stuck(*, stale_after: timedelta = IMPORT_STALE_AFTER) -> int:
    """Mark running jobs that stopped saving progress as failed; return how many."""
    now = timezone.now()
    return ImportJob.objects.filter(status=ImportJob.Status.RUNNING, heartbeat_at__lt=now - stale_after).update(
        status=ImportJob.Status.FAILED,
        failure=str(
            _("The import stopped reporting progress (its worker was probably stopped). Upload the file again.")
        ),
        finished_at=now,
    )
