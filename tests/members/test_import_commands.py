"""import_members / import_events: the same service, run in the shell, with a useful exit status."""

import io

import pytest
from django.core.management import CommandError, call_command

from members.models import ImportJob, Member, MemberEvent
from tests.factories import MemberFactory
from tests.members.test_import_members import MESSY, csv_upload


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def write(tmp_path, rows, name="members.csv"):
    path = tmp_path / name
    path.write_bytes(csv_upload(rows).read())
    return path


def test_invalid_rows_are_printed_with_their_line_and_the_exit_status_is_an_error(db, tmp_path):
    out = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was written"):
        call_command("import_members", str(write(tmp_path, MESSY)), stdout=out)

    printed = out.getvalue()
    assert "6 rows: 0 created" in printed
    for line, column in [(4, "手机号"), (4, "生日"), (5, "渠道"), (6, "邮箱"), (7, "会员编号")]:
        assert f"line {line}, {column}" in printed
    assert not Member.objects.exists()
    assert ImportJob.objects.get().status == ImportJob.Status.REJECTED


def test_skip_invalid_imports_the_valid_rows_and_names_the_file_to_correct(db, tmp_path):
    out = io.StringIO()
    call_command("import_members", str(write(tmp_path, MESSY)), "--skip-invalid", stdout=out)

    printed = out.getvalue()
    assert "2 created" in printed and "4 invalid" in printed
    job = ImportJob.objects.get()
    assert job.invalid_rows_file.path in printed
    assert Member.objects.count() == 2


def test_dry_run_writes_nothing(db, tmp_path):
    out = io.StringIO()
    call_command("import_members", str(write(tmp_path, MESSY[:3])), "--dry-run", stdout=out)
    assert "2 created" in out.getvalue() and "Dry run" in out.getvalue()
    assert not Member.objects.exists()


def test_import_events(db, tmp_path):
    MemberFactory(external_id="M1")
    path = write(
        tmp_path,
        [
            ["member", "kind", "occurred_at", "amount", "source", "external_id"],
            ["M1", "purchase", "2024-03-01", "9.9", "shop", "SO-1"],
        ],
        "events.csv",
    )
    out = io.StringIO()
    call_command("import_events", str(path), stdout=out)
    assert "1 created" in out.getvalue()
    assert MemberEvent.objects.get().external_id == "SO-1"


def test_unusable_files_are_command_errors(db, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_members", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="external_id"):
        call_command("import_members", str(write(tmp_path, [["姓名"], ["A"]])))


@pytest.mark.parametrize("name", ["import_members", "import_events"])
def test_help_lists_the_options(name):
    from django.core.management import load_command_class

    help_text = load_command_class("members", name).create_parser("manage.py", name).format_help()
    assert "--dry-run" in help_text and "--skip-invalid" in help_text
