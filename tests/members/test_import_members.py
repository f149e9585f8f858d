"""Member imports through the ImportJob service: rules, reporting, all-or-nothing, background runs."""

import csv
import io
import threading
from datetime import date, datetime, timedelta

import openpyxl
import pytest
from django.core.files.base import ContentFile
from django.db import OperationalError, connection
from django.utils import timezone

from crm.core.exceptions import ApplicationError
from members.models import Channel, Gender, ImportJob, Member
from members.services import import_job_create, import_job_run, import_jobs_fail_stuck
from members.services import imports as imports_service
from tests.factories import MemberFactory


def csv_upload(rows, name="members.csv", encoding="utf-8-sig") -> ContentFile:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return ContentFile(buffer.getvalue().encode(encoding), name=name)


def xlsx_upload(rows, name="members.xlsx") -> ContentFile:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return ContentFile(buffer.getvalue(), name=name)


def upload(file_format, rows, stem="members"):
    return csv_upload(rows, f"{stem}.csv") if file_format == "csv" else xlsx_upload(rows, f"{stem}.xlsx")


def run_members(file, **options) -> ImportJob:
    return import_job_create(target=ImportJob.Target.MEMBERS, file=file, inline=True, **options)


def read_back(job: ImportJob) -> list[list]:
    """The invalid-rows file of a job, as rows of text."""
    with job.invalid_rows_file.open("rb") as stored:
        data = stored.read()
    if job.invalid_rows_file.name.endswith(".xlsx"):
        sheet = openpyxl.load_workbook(io.BytesIO(data)).active
        return [["" if cell is None else cell for cell in row] for row in sheet.iter_rows(values_only=True)]
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def accounted(job: ImportJob) -> int:
    return job.created_count + job.updated_count + job.unchanged_count + job.duplicate_count + job.invalid_count


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[int]:
    """Background runs are recorded here instead of reaching a broker."""
    from members import tasks

    ids: list[int] = []
    monkeypatch.setattr(tasks.run_import_job, "delay", ids.append)
    return ids


HEADER = ["会员编号", "姓名", "手机号", "生日", "性别", "城市", "渠道", "入会时间", "邮箱"]
MESSY = [
    HEADER,
    ["M001", "张三", "+86 138-0013-8001", "1990/5/1", "男", "上海", "企业微信", "2024-01-31 10:00", "zs@example.com"],
    ["M002", "李四", "１３８００１３８００２", "19910203", "女", "北京", "小程序", "2024年2月1日", ""],
    ["M003", "王五", "12345", "1992-02-30", "男", "杭州", "门店", "", ""],  # 2 bad cells
    ["", "赵六", "0086 138 0013 8004", "", "保密", "成都", "teleport", "", ""],  # bad channel
    ["M005", "钱七", "138 0013 8005", "", "", "", "", "", "not-an-email"],
    ["", "孙八", "", "", "", "", "", "", ""],  # neither number nor phone
]


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_messy_file_reports_every_invalid_row_and_writes_nothing(db, file_format):
    job = run_members(upload(file_format, MESSY))

    assert job.status == ImportJob.Status.REJECTED
    assert not Member.objects.exists()
    assert [(e["line"], e["column"], e["value"]) for e in job.errors] == [
        (4, "手机号", "12345"),
        (4, "生日", "1992-02-30"),
        (5, "渠道", "teleport"),
        (6, "邮箱", "not-an-email"),
        (7, "会员编号", ""),
    ]
    assert all(e["reason"] for e in job.errors)
    assert (job.total_rows, job.invalid_count, job.created_count) == (6, 4, 0)
    assert not job.invalid_rows_file


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_skip_invalid_writes_valid_rows_and_returns_a_file_that_imports_after_correction(db, file_format):
    job = run_members(upload(file_format, MESSY), skip_invalid=True)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.created_count, job.invalid_count) == (2, 4)
    assert accounted(job) == job.total_rows == 6
    first = Member.objects.get(external_id="M001")
    assert (first.name, str(first.phone), first.birthday, first.gender) == (
        "张三",
        "+8613800138001",
        date(1990, 5, 1),
        Gender.MALE,
    )
    assert (first.channel, first.city, first.email) == (Channel.WECOM, "上海", "zs@example.com")
    assert timezone.localtime(first.joined_at).strftime("%Y-%m-%d %H:%M") == "2024-01-31 10:00"
    assert Member.objects.get(external_id="M002").birthday == date(1991, 2, 3)

    returned = read_back(job)
    assert returned[0] == HEADER + ["错误原因"]
    assert [row[0:2] for row in returned[1:]] == [["M003", "王五"], ["", "赵六"], ["M005", "钱七"], ["", "孙八"]]
    assert "手机号" in returned[1][-1] and "生日" in returned[1][-1]

    # Staff correct the cells in the returned file and import it as it is, reason column included.
    corrected = [returned[0]] + [list(row) for row in returned[1:]]
    corrected[1][2], corrected[1][3] = "13800138003", "1992-02-28"
    corrected[2][6] = "社群"
    corrected[3][8] = ""
    corrected[4][2] = "13800138006"
    again = run_members(upload(file_format, corrected, stem="corrected"))

    assert again.status == ImportJob.Status.SUCCEEDED, again.errors
    assert (again.created_count, again.invalid_count) == (4, 0)
    assert again.ignored_columns == []
    assert Member.objects.count() == 6
    assert Member.objects.get(phone="+8613800138004").channel == Channel.COMMUNITY


def test_a_file_that_repeats_a_member_keeps_the_last_row(db):
    job = run_members(
        csv_upload(
            [
                ["external_id", "name", "phone", "city"],
                ["M1", "first", "13800138001", "上海"],
                ["", "by phone", "13800138002", ""],
                ["M1", "last", "13800138001", ""],
                ["", "same phone again", "138-0013-8002", "北京"],
                ["", "phone of M1", "+8613800138001", "杭州"],
            ]
        )
    )

    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.created_count, job.duplicate_count) == (2, 3)
    assert accounted(job) == 5
    assert Member.objects.get(external_id="M1").name == "phone of M1"
    assert Member.objects.get(external_id="M1").city == "杭州"
    assert Member.objects.get(phone="+8613800138002").name == "same phone again"


def test_upsert_by_number_or_by_phone_and_blank_cells_keep_values(db):
    by_number = MemberFactory(external_id="M1", name="old", city="上海", phone="+8613800138001")
    by_phone = MemberFactory(external_id="P9", name="old", phone="+8613800138002", city="北京")
    unnumbered = MemberFactory(external_id=None, name="old", phone="+8613800138003")

    job = run_members(
        csv_upload(
            [
                ["external_id", "name", "phone", "city"],
                ["M1", "new", "", ""],
                ["", "new", "13800138002", "广州"],
                ["N3", "numbered now", "13800138003", ""],
            ]
        )
    )

    assert (job.created_count, job.updated_count, job.unchanged_count) == (0, 3, 0)
    by_number.refresh_from_db()
    by_phone.refresh_from_db()
    unnumbered.refresh_from_db()
    assert (by_number.name, by_number.city, str(by_number.phone)) == ("new", "上海", "+8613800138001")
    assert (by_phone.name, by_phone.city, by_phone.external_id) == ("new", "广州", "P9")
    assert (unnumbered.external_id, unnumbered.name) == ("N3", "numbered now")
    assert Member.objects.count() == 3


PHONE_CONFLICTS = [
    ["会员编号", "手机号"],
    ["NEW", "13800138001"],  # a new member with the owner's phone
    ["M2", "13800138001"],  # an existing member taking the owner's phone
    ["A", "13800138009"],
    ["B", "13800138009"],  # two members of the file with one phone
    ["C", "13800138010"],
]


@pytest.fixture
def phone_owners(db):
    return MemberFactory(external_id="OWNER", phone="+8613800138001"), MemberFactory(
        external_id="M2", phone="+8613800138002"
    )


def test_a_phone_owned_by_another_member_is_an_invalid_row(phone_owners):
    job = run_members(csv_upload(PHONE_CONFLICTS))

    assert job.status == ImportJob.Status.REJECTED
    assert [(e["line"], e["column"]) for e in job.errors] == [(2, "手机号"), (3, "手机号"), (5, "手机号")]
    assert "OWNER" in job.errors[0]["reason"]
    assert "4" in job.errors[2]["reason"]
    assert Member.objects.count() == 2


def test_skip_invalid_leaves_phone_conflicts_out(phone_owners):
    job = run_members(csv_upload(PHONE_CONFLICTS), skip_invalid=True)

    assert (job.created_count, job.invalid_count) == (2, 3)
    assert set(Member.objects.values_list("external_id", "phone")) == {
        ("OWNER", "+8613800138001"),
        ("M2", "+8613800138002"),
        ("A", "+8613800138009"),
        ("C", "+8613800138010"),
    }
    assert [row[0] for row in read_back(job)[1:]] == ["NEW", "M2", "B"]


def test_reimporting_the_same_file_changes_nothing(db):
    rows = [HEADER, *[row for row in MESSY[1:3]]]
    first = run_members(csv_upload(rows))
    updated_at = dict(Member.objects.values_list("external_id", "updated_at"))

    second = run_members(csv_upload(rows))

    assert (first.created_count, first.updated_count) == (2, 0)
    assert (second.created_count, second.updated_count, second.unchanged_count) == (0, 0, 2)
    assert dict(Member.objects.values_list("external_id", "updated_at")) == updated_at


def test_dry_run_counts_and_writes_nothing(db):
    MemberFactory(external_id="M001", name="old")

    job = run_members(csv_upload([HEADER, *MESSY[1:3]]), dry_run=True)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.created_count, job.updated_count) == (1, 1)
    assert list(Member.objects.values_list("external_id", "name")) == [("M001", "old")]


def test_unknown_columns_are_reported_as_ignored(db):
    job = run_members(csv_upload([["external_id", "name", "会员等级"], ["M1", "A", "金卡"]]))
    assert job.ignored_columns == ["会员等级"]
    assert job.created_count == 1


def test_a_file_without_a_key_column_is_refused_before_a_job_exists(db):
    with pytest.raises(ApplicationError):
        run_members(csv_upload([["姓名", "城市"], ["A", "上海"]]))
    assert not ImportJob.objects.exists()


def test_large_files_run_in_the_background_once(db, settings, django_capture_on_commit_callbacks, queued):
    settings.CRM_IMPORT_INLINE_MAX_ROWS = 2
    from members import tasks

    rows = [["external_id", "name"], ["M1", "A"], ["M2", "B"], ["M3", "C"]]

    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload(rows))

    assert job.status == ImportJob.Status.PENDING
    assert job.total_rows == 3
    assert queued == [job.pk]

    assert tasks.run_import_job(job.pk) == ImportJob.Status.SUCCEEDED
    assert tasks.run_import_job(job.pk) == ImportJob.Status.SUCCEEDED  # a redelivery
    job.refresh_from_db()
    assert (job.created_count, job.processed_rows) == (3, 3)
    assert Member.objects.count() == 3


def test_a_job_reset_while_running_does_not_commit_its_rows(db):
    job = import_job_create(
        target=ImportJob.Target.MEMBERS,
        file=csv_upload([["external_id"], ["M1"], ["M2"]]),
        inline=False,
    )

    def reset_as_stuck(processed, total):
        ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.FAILED, failure="reset")

    job = import_job_run(job_id=job.pk, on_progress=reset_as_stuck)

    assert (job.status, job.failure) == (ImportJob.Status.FAILED, "reset")
    assert not Member.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_database_error_puts_the_job_back_to_waiting_for_the_retry(monkeypatch):
    job = import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload([["external_id"], ["M1"]]), inline=False)

    def lost_connection(self):
        raise OperationalError("server closed the connection unexpectedly")

    original_write = imports_service._MemberStage.write
    monkeypatch.setattr(imports_service._MemberStage, "write", lost_connection)
    with pytest.raises(OperationalError):
        import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PENDING
    assert not Member.objects.exists()

    monkeypatch.setattr(imports_service._MemberStage, "write", original_write)
    assert import_job_run(job_id=job.pk).status == ImportJob.Status.SUCCEEDED
    assert Member.objects.count() == 1


def test_an_unexpected_error_fails_the_job_with_its_message(db, monkeypatch):
    job = import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload([["external_id"], ["M1"]]), inline=False)
    monkeypatch.setattr(imports_service._MemberStage, "write", lambda self: 1 / 0)

    job = import_job_run(job_id=job.pk)

    assert job.status == ImportJob.Status.FAILED
    assert "ZeroDivisionError" in job.failure
    assert not Member.objects.exists()


def test_stuck_running_jobs_are_failed(db):
    stuck, alive, waiting = (
        import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload([["external_id"], ["M1"]]), inline=False)
        for _ in range(3)
    )
    now = timezone.now()
    ImportJob.objects.filter(pk=stuck.pk).update(status=ImportJob.Status.RUNNING, heartbeat_at=now - timedelta(hours=1))
    ImportJob.objects.filter(pk=alive.pk).update(status=ImportJob.Status.RUNNING, heartbeat_at=now)

    from members.tasks import fail_stuck_import_jobs

    assert fail_stuck_import_jobs() == 1
    statuses = dict(ImportJob.objects.values_list("pk", "status"))
    assert statuses == {
        stuck.pk: ImportJob.Status.FAILED,
        alive.pk: ImportJob.Status.RUNNING,
        waiting.pk: ImportJob.Status.PENDING,
    }
    assert import_jobs_fail_stuck() == 0


def test_xlsx_native_cells_dates_numbers_and_serials(db):
    job = run_members(
        xlsx_upload(
            [
                ["会员编号", "手机号", "生日", "入会时间", "短信退订"],
                ["M1", 13800138001, datetime(1990, 5, 1), datetime(2024, 1, 31, 10, 30), True],
                ["M2", 13800138002.0, 32994, 45322.5, 0],  # number cells: Excel serials
            ]
        )
    )

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    first, second = Member.objects.order_by("external_id")
    assert (str(first.phone), first.birthday, first.sms_opt_out) == ("+8613800138001", date(1990, 5, 1), True)
    assert timezone.localtime(first.joined_at).strftime("%Y-%m-%d %H:%M") == "2024-01-31 10:30"
    assert (str(second.phone), second.birthday, second.sms_opt_out) == ("+8613800138002", date(1990, 5, 1), False)
    assert timezone.localtime(second.joined_at).strftime("%Y-%m-%d %H:%M") == "2024-01-31 12:00"


def _in_threads(*calls):
    """Run the calls at the same moment, each on its own database connection."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


ROWS = [["external_id", "phone"], *([f"M{n}", f"13800{n:06d}"] for n in range(300))]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_job_run_twice_at_once_imports_once():
    job = import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload(ROWS), inline=False)

    _in_threads(lambda: import_job_run(job_id=job.pk), lambda: import_job_run(job_id=job.pk))

    job.refresh_from_db()
    # A second run would have found every member there and recorded 0 created, 300 unchanged.
    assert (job.status, job.created_count, job.unchanged_count) == (ImportJob.Status.SUCCEEDED, 300, 0)
    assert Member.objects.count() == 300


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_files_imported_at_once_create_each_member_once():
    jobs = [import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload(ROWS), inline=False) for _ in range(2)]

    _in_threads(*(lambda job=job: import_job_run(job_id=job.pk) for job in jobs))

    for job in jobs:
        job.refresh_from_db()
    assert [job.status for job in jobs] == [ImportJob.Status.SUCCEEDED] * 2
    assert sorted(job.created_count for job in jobs) == [0, 300]
    assert Member.objects.count() == 300
