"""members.importing: reading files and normalizing cells, without a database."""

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.utils import translation

from members import importing
from members.models import Channel, EventKind, Gender

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "+86 138 0013 8000",
        "+86-138-0013-8000",
        "0086 13800138000",
        "86 13800138000",
        "(138) 0013-8000",
        "１３８００１３８０００",
        "＋８６ １３８－００１３－８０００",
        " 138\u300000138000 ",
        13800138000,
        13800138000.0,
    ],
)
def test_phone_formats_of_one_mobile_all_become_e164(raw):
    assert importing.normalize_phone(raw) == ("+8613800138000", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("010-12345678", "+861012345678"),  # Beijing landline, through the phonenumbers fallback
        ("+1 650-253-0000", "+16502530000"),
        ("0086 21 6123 4567", "+862161234567"),
    ],
)
def test_phones_beyond_cn_mobiles_fall_back_to_phonenumbers(raw, expected):
    assert importing.normalize_phone(raw) == (expected, None)


@pytest.mark.parametrize("raw", ["12345", "1380013800", "14012345678", "1.38001E+10", "abc", 1380.5])
def test_invalid_phones_are_errors(raw):
    value, error = importing.normalize_phone(raw)
    assert value is None
    assert error


@pytest.mark.parametrize("raw", [None, "", "  ", "--"])
def test_empty_phone_is_not_given(raw):
    assert importing.normalize_phone(raw) == (None, None)


@pytest.mark.parametrize(
    "raw",
    [
        "2024-01-31",
        "2024/1/31",
        "2024.1.31",
        "20240131",
        "2024年1月31日",
        "2024 年 1 月 31 日",
        "45322",  # an Excel serial number that lost its date format in a CSV
        45322,  # the same as an XLSX number cell
        20240131,
        datetime(2024, 1, 31),  # an XLSX date cell
        date(2024, 1, 31),
    ],
)
def test_date_formats(raw):
    assert importing.normalize_date(raw) == (date(2024, 1, 31), None)


@pytest.mark.parametrize("raw", ["2024-02-30", "31/01/2024", "yesterday", "1990", 12, True])
def test_invalid_dates_are_errors(raw):
    value, error = importing.normalize_date(raw)
    assert value is None
    assert error


def test_future_birthdays_are_errors():
    today = date(2024, 6, 1)
    assert importing.normalize_date("2024-06-01", today=today) == (date(2024, 6, 1), None)
    value, error = importing.normalize_date("2024-06-02", today=today)
    assert value is None and error


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-31", datetime(2024, 1, 31, tzinfo=SHANGHAI)),
        ("2024/1/31 9:05", datetime(2024, 1, 31, 9, 5, tzinfo=SHANGHAI)),
        ("2024-01-31 09:05:07.25", datetime(2024, 1, 31, 9, 5, 7, 250000, tzinfo=SHANGHAI)),
        ("2024-01-31T01:05:00Z", datetime(2024, 1, 31, 1, 5, tzinfo=UTC)),
        ("2024-01-31T09:05:00+08:00", datetime(2024, 1, 31, 9, 5, tzinfo=timezone(timedelta(hours=8)))),
        ("2024年1月31日 09:05", datetime(2024, 1, 31, 9, 5, tzinfo=SHANGHAI)),
        (45322.5, datetime(2024, 1, 31, 12, tzinfo=SHANGHAI)),
        (datetime(2024, 1, 31, 9, 5), datetime(2024, 1, 31, 9, 5, tzinfo=SHANGHAI)),
    ],
)
def test_datetimes_without_a_zone_are_local_wall_clock_times(raw, expected):
    value, error = importing.normalize_datetime(raw, tz=SHANGHAI)
    assert error is None
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("男", Gender.MALE),
        ("女士", Gender.FEMALE),
        ("Female", Gender.FEMALE),
        ("M", Gender.MALE),
        ("保密", Gender.UNKNOWN),
    ],
)
def test_gender_labels(raw, expected):
    assert importing.normalize_gender(raw) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("企业微信", Channel.WECOM),
        ("WeCom", Channel.WECOM),
        ("小程序", Channel.MINI_PROGRAM),
        ("Mini-program", Channel.MINI_PROGRAM),
        ("门店", Channel.STORE),
        ("store / pos", Channel.STORE),
        ("online_shop", Channel.ONLINE_SHOP),
        ("老带新", Channel.REFERRAL),
    ],
)
def test_channel_labels(raw, expected):
    value, error = importing.normalize_channel(raw)
    assert (value, error) == (expected, None)
    assert type(value) is str  # plain strings, so COPY never meets an enum type


@pytest.mark.parametrize("active", ["zh-hans", "en"])
def test_labels_of_every_admin_language_are_understood_whatever_language_is_active(active):
    with translation.override("zh-hans"):
        chinese = str(Channel.STORE.label)
    with translation.override("en"):
        english = str(Channel.STORE.label)
    with translation.override(active):
        assert importing.normalize_channel(chinese) == (Channel.STORE, None)
        assert importing.normalize_channel(english) == (Channel.STORE, None)


def test_unknown_labels_list_the_accepted_values():
    value, error = importing.normalize_channel("飞书")
    assert value is None
    assert "wecom" in error


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("99", "99.00"), ("¥1,234.5", "1234.50"), ("12.30元", "12.30"), (12.3, "12.30"), (0, "0.00"), ("1.230", "1.23")],
)
def test_amounts(raw, expected):
    assert importing.normalize_amount(raw) == (Decimal(expected), None)


@pytest.mark.parametrize("raw", ["-1", "abc", "1.234", "NaN", "1e12", True])
def test_invalid_amounts(raw):
    value, error = importing.normalize_amount(raw)
    assert value is None and error


def test_payload_must_be_a_json_object():
    assert importing.normalize_payload('{"sku": "A1", "qty": 2}') == ({"sku": "A1", "qty": 2}, None)
    assert importing.normalize_payload("") == (None, None)
    assert importing.normalize_payload("[1, 2]")[1]
    assert importing.normalize_payload("{sku: A1}")[1]


@pytest.mark.parametrize(("raw", "expected"), [("是", True), ("否", False), ("yes", True), ("0", False), (True, True)])
def test_flags(raw, expected):
    assert importing.normalize_flag(raw) == (expected, None)


def test_email_and_text_lengths():
    assert importing.normalize_email(" a@example.com ") == ("a@example.com", None)
    assert importing.normalize_email("not-an-address")[1]
    assert importing.normalize_text("x" * 65, 64)[1]
    assert importing.normalize_text("'=1+1") == ("=1+1", None)  # undoes the escape of our own exports


def test_headers_in_chinese_or_english_with_decorations():
    columns = importing.member_columns(["会员编号", "Phone Number (必填)", "姓名*", "渠道", "会员等级", "错误原因"])
    assert columns.index == {"external_id": 0, "phone": 1, "name": 2, "channel": 3}
    assert columns.labels["phone"] == "Phone Number (必填)"
    assert columns.ignored == ["会员等级"]
    assert columns.reason_index == 5
    assert columns.language == "zh"


def test_member_file_needs_a_key_column():
    with pytest.raises(importing.TableError):
        importing.member_columns(["姓名", "城市"])


def test_two_columns_for_one_field_are_refused():
    with pytest.raises(importing.TableError):
        importing.member_columns(["手机号", "phone"])


def test_event_file_lists_its_missing_columns():
    with pytest.raises(importing.TableError) as raised:
        importing.event_columns(["member", "kind"])
    assert "occurred_at" in raised.value.message and "external_id" in raised.value.message


def _csv_bytes(rows, encoding="utf-8"):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "utf-16"])
def test_csv_encodings(encoding):
    table = importing.read_table(_csv_bytes([["姓名", "手机号"], ["张三", "13800138000"]], encoding), "会员.csv")
    assert table.headers == ["姓名", "手机号"]
    assert list(table.rows()) == [(2, ["张三", "13800138000"])]


def test_csv_lines_count_blank_rows_and_multiline_cells():
    data = b'name,phone,notes\nA,13800138000,"two\nlines"\n\n,,\nB,13800138001,x\n'
    table = importing.read_table(data, "m.csv")
    assert [line for line, _cells in table.rows()] == [2, 6]
    assert table.estimate_rows() == 5  # lines after the header: an estimate for progress


def test_semicolon_separated_csv():
    table = importing.read_table(b"name;phone\nA;13800138000\n", "m.csv")
    assert list(table.rows()) == [(2, ["A", "13800138000"])]


def test_xlsx_rows_keep_their_sheet_line_and_cell_types():
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["姓名", "生日"])
    sheet.append(["张三", datetime(1990, 5, 1)])
    sheet.append([None, None])
    sheet.append(["李四", 32994])
    buffer = io.BytesIO()
    workbook.save(buffer)
    table = importing.read_table(buffer.getvalue(), "会员.xlsx")
    assert list(table.rows()) == [(2, ("张三", datetime(1990, 5, 1))), (4, ("李四", 32994))]
    assert table.estimate_rows() == 3  # the used range, blank row included: an estimate for progress


def test_other_formats_are_refused():
    with pytest.raises(importing.TableError):
        importing.read_table(b"\xd0\xcf\x11\xe0", "old.xls")
    with pytest.raises(importing.TableError):
        importing.read_table(b"not a zip", "broken.xlsx")


def test_parse_member_rows_reports_every_bad_cell_with_its_line():
    data = _csv_bytes(
        [
            ["会员编号", "手机号", "生日", "性别"],
            ["M1", "138 0013 8000", "1990/5/1", "男"],
            ["M2", "12345", "1990-02-30", "男"],
            ["", "", "1990-01-01", ""],
        ]
    )
    table = importing.read_table(data, "m.csv")
    parsed = importing.parse_member_rows(
        table, importing.member_columns(table.headers), tz=SHANGHAI, today=date(2024, 1, 1)
    )
    assert parsed.total == 3
    assert [row[:3] for row in parsed.rows] == [(2, "M1", "+8613800138000")]
    assert [(e.line, e.column, e.value) for e in parsed.errors] == [
        (3, "手机号", "12345"),
        (3, "生日", "1990-02-30"),
        (4, "会员编号", ""),
    ]


def test_parse_event_rows_checks_rules_across_cells():
    data = _csv_bytes(
        [
            ["member", "kind", "sub_kind", "occurred_at", "amount", "source", "external_id"],
            ["M1", "互动", "点赞", "2024-01-31 10:00", "", "wecom", "E1"],
            ["M1", "interaction", "", "2024-01-31 10:00", "", "wecom", "E2"],
            ["M1", "购买", "", "2024-01-31 10:00", "", "shop", "E3"],
            ["M1", "teleport", "", "2024-01-31 10:00", "", "shop", ""],
        ]
    )
    table = importing.read_table(data, "e.csv")
    parsed = importing.parse_event_rows(table, importing.event_columns(table.headers), tz=SHANGHAI)
    assert [(row[0], row[2], row[3]) for row in parsed.rows] == [(2, EventKind.INTERACTION, "like")]
    assert [(e.line, e.column) for e in parsed.errors] == [
        (3, "sub_kind"),
        (4, "amount"),
        (5, "kind"),
        (5, "external_id"),
    ]


def test_invalid_rows_file_keeps_the_upload_format_and_replaces_an_old_reason():
    data = _csv_bytes(
        [["姓名", "手机号", "错误原因"], ["A", "12345", "old"], ["B", "13800138000", ""], ["C", "=HYPERLINK()", ""]]
    )
    table = importing.read_table(data, "m.csv")
    content = importing.invalid_rows_file(table, importing.member_columns(table.headers), {2: "手机号: bad", 4: "x"})
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows == [["姓名", "手机号", "错误原因"], ["A", "12345", "手机号: bad"], ["C", "'=HYPERLINK()", "x"]]


def test_invalid_rows_xlsx_cells_stay_text():
    workbook = openpyxl.Workbook()
    workbook.active.append(["name", "phone"])
    workbook.active.append(["=1+1", "+86 138 0013 8000"])
    workbook.active["A2"].data_type = "s"  # a name that looks like a formula, typed as text
    buffer = io.BytesIO()
    workbook.save(buffer)
    table = importing.read_table(buffer.getvalue(), "m.xlsx")
    content = importing.invalid_rows_file(table, importing.member_columns(table.headers), {2: "why"})
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    assert [[cell.value for cell in row] for row in sheet.iter_rows()] == [
        ["name", "phone", "reason"],
        ["=1+1", "+86 138 0013 8000", "why"],
    ]
    assert sheet["A2"].data_type == "s"
