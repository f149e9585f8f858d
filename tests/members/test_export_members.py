"""Member export: masking, formula escaping, CSV and XLSX, the admin action and the command."""

import csv
import io
from decimal import Decimal
from itertools import zip_longest

import openpyxl
import pytest
from django.core.management import call_command
from django.urls import reverse
from import_export.formats.base_formats import CSV

from members.models import Member, MemberTag
from members.resources import MemberResource, escape_formula, mask_phone, members_export_write
from tests.factories import MemberFactory, TagFactory

CHANGELIST = reverse("admin:members_member_changelist")
HEADERS = [
    "external_id",
    "name",
    "phone",
    "email",
    "gender",
    "birthday",
    "city",
    "channel",
    "joined_at",
    "tags",
    "last_active_at",
    "last_purchase_at",
    "orders_count",
    "total_spent",
]


def read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith("\ufeff".encode()), "Excel needs the byte-order mark to read UTF-8"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def read_xlsx(data: bytes) -> list[dict]:
    rows = list(openpyxl.load_workbook(io.BytesIO(data), read_only=True).active.values)
    # A row read back ends at its last non-empty cell.
    return [dict(zip_longest(rows[0], row)) for row in rows[1:]]


def export(file_format: str, *, unmasked: bool = False, queryset=None) -> bytes:
    stream = io.BytesIO()
    members_export_write(
        stream=stream, file_format=file_format, resource=MemberResource(unmasked_phones=unmasked), queryset=queryset
    )
    return stream.getvalue()


# Rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613812345678", "138****5678"),
        ("+862112345678", "211***5678"),
        ("+16502530000", "+1 650***0000"),
        (None, ""),
    ],
)
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


@pytest.mark.parametrize("text", ["=1+2", "+86 cmd", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_formula_prefixes_are_escaped(text):
    assert escape_formula(text) == f"'{text}"


@pytest.mark.parametrize("text", ["王小明", "a=b", "VIP-1", ""])
def test_plain_text_is_left_alone(text):
    assert escape_formula(text) == text


# Files -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_csv_export_masks_phones_and_lists_tags(django_assert_max_num_queries):
    member = MemberFactory(external_id="M1", name="王小明", phone="+8613812345678", city="上海")
    Member.objects.filter(pk=member.pk).update(orders_count=3, total_spent=Decimal("129.50"))
    for name in ("vip", "复购"):
        MemberTag.objects.create(member=member, tag=TagFactory(name=name))
    MemberFactory.create_batch(20)

    # Tags are prefetched per chunk: the query count does not grow with the members.
    with django_assert_max_num_queries(3):
        rows = read_csv(export("csv"))

    # Later columns (scores) follow these.
    assert list(rows[0])[: len(HEADERS)] == HEADERS
    first = next(row for row in rows if row["external_id"] == "M1")
    assert first["phone"] == "138****5678"
    assert first["tags"] == "vip, 复购"
    assert (first["name"], first["city"], first["orders_count"], first["total_spent"]) == (
        "王小明",
        "上海",
        "3",
        "129.50",
    )
    assert len(rows) == 21


@pytest.mark.django_db
def test_unmasked_export_writes_the_number_staff_dial():
    MemberFactory(phone="+8613812345678")
    MemberFactory(phone="+16502530000")

    phones = {row["phone"] for row in read_csv(export("csv", unmasked=True))}

    # A number outside China keeps its +, so it is escaped like any cell starting with +.
    assert phones == {"13812345678", "'+16502530000"}


@pytest.mark.django_db
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_cells_that_would_run_as_formulas_are_escaped(file_format):
    member = MemberFactory(
        external_id="@SUM(1+1)", name='=HYPERLINK("http://x")', city="+cmd|' /C calc'!A0", email="-2+3@x.com"
    )
    MemberTag.objects.create(member=member, tag=TagFactory(name="=1+1"))
    Member.objects.filter(pk=member.pk).update(total_spent=Decimal("-5.00"))

    data = export(file_format)
    (row,) = read_csv(data) if file_format == "csv" else read_xlsx(data)

    for column in ("external_id", "name", "city", "email", "tags"):
        assert str(row[column]).startswith("'"), (column, row[column])
    # Numbers are numbers, not text that could be a formula: a refund-heavy total stays -5.00.
    assert Decimal(str(row["total_spent"])) == Decimal("-5.00")


@pytest.mark.django_db
def test_xlsx_export_keeps_numbers_and_dates_native():
    member = MemberFactory(external_id="X1", phone="+8613812345678")
    Member.objects.filter(pk=member.pk).update(orders_count=2, total_spent=Decimal("10.00"))

    (row,) = read_xlsx(export("xlsx"))

    assert row["phone"] == "138****5678"
    assert row["orders_count"] == 2
    assert row["joined_at"].year == member.joined_at.year


@pytest.mark.django_db
def test_the_library_export_path_escapes_too(settings):
    """The resource is also usable through django-import-export's own Dataset export."""
    settings.IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True
    MemberFactory(name="=1+2", phone="+8613812345678")

    dataset = MemberResource(unmasked_phones=False).export(Member.objects.prefetch_related("tags"))
    rows = list(csv.DictReader(io.StringIO(CSV().export_data(dataset))))

    assert rows[0]["name"] == "'=1+2"
    assert rows[0]["phone"] == "138****5678"


# Admin action ------------------------------------------------------------------------------


def export_action(client, action: str, members):
    return client.post(
        CHANGELIST, {"action": action, "index": "0", "select_across": "0", "_selected_action": [m.pk for m in members]}
    )


@pytest.mark.django_db
def test_admin_export_of_selected_members_masks_phones_for_operators(client, operator):
    chosen = MemberFactory(phone="+8613812345678")
    MemberFactory(phone="+8613812345679")
    client.force_login(operator)

    response = export_action(client, "export_csv", [chosen])

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="members-')
    rows = read_csv(b"".join(response.streaming_content))
    assert [row["phone"] for row in rows] == ["138****5678"]


@pytest.mark.django_db
def test_admin_export_shows_full_phones_to_supervisors_in_xlsx(client, supervisor):
    member = MemberFactory(phone="+8613812345678")
    client.force_login(supervisor)

    response = export_action(client, "export_xlsx", [member])

    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert [row["phone"] for row in read_xlsx(b"".join(response.streaming_content))] == ["13812345678"]


@pytest.mark.django_db
def test_auditor_cannot_export(client, auditor):
    member = MemberFactory()
    client.force_login(auditor)

    response = export_action(client, "export_csv", [member])

    assert not response.get("Content-Disposition", "").startswith("attachment")


@pytest.mark.django_db
def test_admin_export_refuses_selections_above_its_limit(client, operator, monkeypatch):
    monkeypatch.setattr("members.admin.ADMIN_EXPORT_MAX_ROWS", 2)
    members = MemberFactory.create_batch(3)
    client.force_login(operator)

    response = export_action(client, "export_csv", members)

    assert response.status_code == 302
    assert "export_members" in str(list(response.wsgi_request._messages)[0])


# Command -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_members_command_writes_masked_csv_by_default(tmp_path):
    MemberFactory(phone="+8613812345678", name="=cmd")
    MemberFactory.create_batch(4)
    output = tmp_path / "members.csv"

    call_command("export_members", "--output", str(output), verbosity=0)

    rows = read_csv(output.read_bytes())
    assert len(rows) == 5
    assert "138****5678" in {row["phone"] for row in rows}
    assert "'=cmd" in {row["name"] for row in rows}


@pytest.mark.django_db
def test_export_members_command_unmasked_xlsx(tmp_path):
    MemberFactory(phone="+8613812345678")
    output = tmp_path / "members.xlsx"

    call_command("export_members", "--format", "xlsx", "--unmasked", "--output", str(output), verbosity=0)

    assert [row["phone"] for row in read_xlsx(output.read_bytes())] == ["13812345678"]


@pytest.mark.django_db
def test_export_members_command_streams_in_chunks(tmp_path, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr("members.resources.EXPORT_CHUNK_SIZE", 3)
    MemberFactory.create_batch(10)
    output = tmp_path / "members.csv"

    # A count for the progress bar, then members and their tags chunk by chunk.
    with django_assert_max_num_queries(1 + 2 * 4 + 1) as captured:
        call_command("export_members", "--output", str(output), verbosity=0)

    assert len(read_csv(output.read_bytes())) == 10
    assert sum("members_membertag" in q["sql"] for q in captured.captured_queries) == 4
