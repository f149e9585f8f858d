"""Behaviour-event imports: through events_ingest, with the same reporting and modes as members."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from members.models import EventKind, ImportJob, Member, MemberEvent
from members.services import import_job_create
from tests.factories import MemberFactory
from tests.members.test_import_members import read_back, upload

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEADER = ["会员编号", "类型", "子类型", "发生时间", "金额", "来源", "事件编号", "详情"]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def members(db):
    return MemberFactory(external_id="M1"), MemberFactory(external_id="M2")


def run_events(file, **options) -> ImportJob:
    return import_job_create(target=ImportJob.Target.EVENTS, file=file, inline=True, **options)


MESSY = [
    HEADER,
    ["M1", "购买", "", "2024/3/1 10:00", "¥199.00", "shop", "SO-1", '{"sku": "A1"}'],
    ["M1", "互动", "点赞", "2024-03-02 09:30:00", "", "wecom", "W-1", ""],
    ["M404", "签到", "", "2024-03-03", "", "mini_program", "C-1", ""],  # unknown member
    ["M2", "teleport", "", "2024-03-03", "", "shop", "X-1", ""],  # bad kind
    ["M2", "purchase", "", "2024-03-04", "", "shop", "SO-2", ""],  # purchase without amount
    ["M2", "refund", "", "not a date", "-5", "shop", "RF-1", "[1]"],  # three bad cells
    ["M2", "check_in", "", "20240305", "", "mini_program", "", ""],  # no event id
]


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_messy_event_file_reports_every_invalid_row_and_records_nothing(members, file_format):
    job = run_events(upload(file_format, MESSY, stem="events"))

    assert job.status == ImportJob.Status.REJECTED
    assert not MemberEvent.objects.exists()
    assert [(e["line"], e["column"]) for e in job.errors] == [
        (4, "会员编号"),
        (5, "类型"),
        (6, "金额"),
        (7, "发生时间"),
        (7, "金额"),
        (7, "详情"),
        (8, "事件编号"),
    ]
    assert (job.total_rows, job.invalid_count) == (7, 5)
    members[0].refresh_from_db()
    assert members[0].orders_count == 0


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_skip_invalid_records_valid_events_and_the_returned_file_imports_after_correction(members, file_format):
    first, second = members
    job = run_events(upload(file_format, MESSY, stem="events"), skip_invalid=True)

    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.created_count, job.duplicate_count, job.invalid_count) == (2, 0, 5)
    purchase = MemberEvent.objects.get(source="shop", external_id="SO-1")
    assert (purchase.member_id, purchase.kind, purchase.amount, purchase.payload) == (
        first.pk,
        EventKind.PURCHASE,
        Decimal("199.00"),
        {"sku": "A1"},
    )
    assert purchase.occurred_at == datetime(2024, 3, 1, 10, tzinfo=SHANGHAI)
    assert MemberEvent.objects.get(external_id="W-1").sub_kind == "like"
    first.refresh_from_db()
    assert (first.orders_count, first.total_spent) == (1, Decimal("199.00"))

    returned = read_back(job)
    assert returned[0] == HEADER + ["错误原因"]
    assert [row[6] for row in returned[1:]] == ["C-1", "X-1", "SO-2", "RF-1", ""]

    corrected = [list(row) for row in returned]
    corrected[1][0] = "M2"
    corrected[2][1] = "投诉"
    corrected[3][4] = "88"
    corrected[4][3] = "2024-03-05 12:00"
    corrected[4][4] = "20"
    corrected[4][7] = ""
    corrected[5][6] = "C-2"
    again = run_events(upload(file_format, corrected, stem="events-corrected"))

    assert again.status == ImportJob.Status.SUCCEEDED, again.errors
    assert (again.created_count, again.invalid_count) == (5, 0)
    second.refresh_from_db()
    assert (second.orders_count, second.total_spent) == (1, Decimal("68.00"))  # 88 bought, 20 refunded


def test_reimport_and_repeated_rows_record_each_event_once(members):
    rows = [
        HEADER,
        ["M1", "purchase", "", "2024-03-01 10:00", "50", "shop", "SO-1", ""],
        ["M1", "purchase", "", "2024-03-01 10:00", "60", "shop", "SO-1", ""],  # same event, corrected amount
        ["M2", "interaction", "share", "2024-03-01 11:00", "", "wecom", "W-1", ""],
    ]
    first = run_events(upload("csv", rows, stem="events"))
    again = run_events(upload("csv", rows, stem="events"))

    assert (first.created_count, first.duplicate_count) == (2, 1)
    assert (again.created_count, again.duplicate_count) == (0, 3)
    assert MemberEvent.objects.count() == 2
    assert MemberEvent.objects.get(external_id="SO-1").amount == Decimal("60.00")  # the last row of the file
    members[0].refresh_from_db()
    assert (members[0].orders_count, members[0].total_spent) == (1, Decimal("60.00"))


def test_dry_run_counts_events_and_records_nothing(members):
    job = run_events(upload("csv", MESSY[:3], stem="events"), dry_run=True)

    assert (job.status, job.created_count) == (ImportJob.Status.SUCCEEDED, 2)
    assert not MemberEvent.objects.exists()
    assert Member.objects.get(external_id="M1").orders_count == 0
