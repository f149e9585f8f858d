"""The import pages of the admin, through the real views: upload, result, progress, downloads."""

import csv
import io

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from members.models import ImportJob, Member
from tests.factories import UserFactory
from tests.members.test_import_members import MESSY, csv_upload

ADD_URL = reverse("admin:members_importjob_add")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[int]:
    from members import tasks

    ids: list[int] = []
    monkeypatch.setattr(tasks.run_import_job, "delay", ids.append)
    return ids


def change_url(job: ImportJob, view: str = "change") -> str:
    return reverse(f"admin:members_importjob_{view}", args=[job.pk])


def post_upload(client, rows, **options):
    data = {"target": "members", "file": csv_upload(rows, "会员.csv"), **options}
    return client.post(ADD_URL, data)


def test_upload_with_skip_invalid_shows_the_result_and_returns_the_invalid_rows(client, operator):
    client.force_login(operator)

    response = post_upload(client, MESSY, skip_invalid="on")

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(job)
    assert (job.created_by, job.status, job.created_count, job.invalid_count) == (
        operator,
        ImportJob.Status.SUCCEEDED,
        2,
        4,
    )
    assert Member.objects.count() == 2

    page = client.get(change_url(job))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'id="import-errors"' in content
    assert "<td>4</td><td>手机号</td><td>12345</td>" in content
    assert change_url(job, "invalid_rows") in content
    assert 'name="_save"' not in content  # read-only

    download = client.get(change_url(job, "invalid_rows"))
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert rows[0][-1] == "错误原因"
    assert [row[0] for row in rows[1:]] == ["M003", "", "M005", ""]

    errors = client.get(change_url(job, "errors"))
    lines = list(csv.reader(io.StringIO(errors.content.decode("utf-8-sig"))))
    assert [line[0] for line in lines[1:]] == ["4", "4", "5", "6", "7"]


def test_default_upload_writes_nothing_and_lists_every_invalid_row(client, operator):
    client.force_login(operator)

    post_upload(client, MESSY)

    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.REJECTED
    assert not Member.objects.exists()
    content = client.get(change_url(job)).content.decode()
    assert content.count("<tr><td>") == 5  # the five errors of the four invalid rows
    assert change_url(job, "invalid_rows") not in content
    assert client.get(change_url(job, "invalid_rows")).status_code == 404


def test_a_file_with_unusable_headers_is_refused_on_the_form(client, operator):
    client.force_login(operator)

    response = post_upload(client, [["姓名", "城市"], ["A", "上海"]])

    assert response.status_code == 200
    assert "会员编号" in response.content.decode()  # the form error names the missing columns
    assert not ImportJob.objects.exists()


def test_large_uploads_run_in_the_background_with_a_progress_page(
    client, operator, settings, queued, django_capture_on_commit_callbacks
):
    settings.CRM_IMPORT_INLINE_MAX_ROWS = 1
    client.force_login(operator)

    with django_capture_on_commit_callbacks(execute=True):
        post_upload(client, MESSY[:3])

    job = ImportJob.objects.get()
    assert queued == [job.pk]
    page = client.get(change_url(job)).content.decode()
    assert 'id="import-progress-bar"' in page
    assert change_url(job, "progress") in page
    progress = client.get(change_url(job, "progress")).json()
    assert (progress["status"], progress["finished"], progress["total_rows"]) == ("pending", False, 2)

    from members.tasks import run_import_job

    run_import_job(job.pk)
    progress = client.get(change_url(job, "progress")).json()
    assert (progress["status"], progress["finished"], progress["percent"]) == ("succeeded", True, 100)


def test_the_upload_form_preselects_the_target_and_offers_only_permitted_ones(client, db):
    importer = UserFactory(username="members-only")
    importer.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_importjob", "view_importjob", "import_members"])
    )
    client.force_login(importer)

    page = client.get(ADD_URL + "?target=members").content.decode()
    assert '<option value="members" selected>' in page
    assert 'value="events"' not in page

    response = client.post(ADD_URL, {"target": "events", "file": csv_upload([["member"], ["M1"]])})
    assert response.status_code == 200
    assert not ImportJob.objects.exists()


def test_staff_without_an_import_permission_cannot_upload(client, auditor):
    client.force_login(auditor)
    assert client.get(ADD_URL).status_code == 403


def test_staff_see_their_own_imports_unless_they_may_see_all(client, operator, supervisor):
    client.force_login(operator)
    post_upload(client, MESSY[:2])
    job = ImportJob.objects.get()
    colleague = UserFactory(username="colleague", roles=["Operator"])

    client.force_login(colleague)
    assert client.get(change_url(job)).status_code == 404
    assert client.get(change_url(job, "progress")).status_code == 404
    assert client.get(change_url(job, "errors")).status_code == 404
    assert str(job) not in client.get(reverse("admin:members_importjob_changelist")).content.decode()

    client.force_login(supervisor)
    assert client.get(change_url(job)).status_code == 200
    assert str(job) in client.get(reverse("admin:members_importjob_changelist")).content.decode()
