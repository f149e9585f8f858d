"""Admin for imports: upload a file, watch its progress, read its errors, fetch its invalid rows.

The upload runs members.services.import_job_create, which runs small files at once and sends
large ones to Celery; the result page polls a small JSON view while the job runs. Jobs are never
edited after creation. Staff see their own jobs unless they may see all.
"""

import csv
import io
import os

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from crm.core.admin import BaseModelAdmin
from crm.core.exceptions import ApplicationError
from members import importing
from members.models import ImportJob
from members.services import import_job_create

# The result page lists this many errors; all of them are in the errors download.
ERRORS_SHOWN = 500
PERMISSION_BY_TARGET = {
    ImportJob.Target.MEMBERS: "members.import_members",
    ImportJob.Target.EVENTS: "members.import_events",
}


class ImportUploadForm(forms.Form):
    target = forms.ChoiceField(label=_("what to import"))
    file = forms.FileField(
        label=_("file"), help_text=_("CSV (UTF-8 or GBK) or XLSX; the first row holds the column names.")
    )
    dry_run = forms.BooleanField(
        label=_("dry run"), required=False, help_text=_("Check the file and report; write nothing.")
    )
    skip_invalid = forms.BooleanField(
        label=_("skip invalid rows"),
        required=False,
        help_text=_(
            "Import the valid rows and get the invalid ones back as a file to correct and import again. "
            "Without this, nothing is written when any row is invalid."
        ),
    )

    def __init__(self, *args, targets: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = [
            (value, label) for value, label in ImportJob.Target.choices if value in targets
        ]


@admin.register(ImportJob)
class ImportJobAdmin(BaseModelAdmin):
    list_display = (
        "__str__",
        "target",
        "status",
        "progress",
        "total_rows",
        "created_count",
        "updated_count",
        "invalid_count",
        "dry_run",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "target", "dry_run")
    list_select_related = ("created_by",)
    add_form_template = "admin/members/importjob/add_form.html"
    change_form_template = "admin/members/importjob/change_form.html"

    # -- who may do what

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.has_perm("members.view_all_importjobs"):
            return queryset
        return queryset.filter(created_by=request.user)

    def allowed_targets(self, request) -> list[str]:
        return [target for target, perm in PERMISSION_BY_TARGET.items() if request.user.has_perm(perm)]

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and bool(self.allowed_targets(request))

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # an import is a record of what happened

    # -- list

    @admin.display(description=_("progress"))
    def progress(self, job: ImportJob) -> str:
        return format_html('<progress value="{}" max="100"></progress> {}%', job.progress_percent, job.progress_percent)

    # -- pages

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/progress/", wrap(self.progress_view), name=f"{prefix}_progress"),
            path("<path:object_id>/invalid-rows/", wrap(self.invalid_rows_view), name=f"{prefix}_invalid_rows"),
            path("<path:object_id>/errors/", wrap(self.errors_view), name=f"{prefix}_errors"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        targets = self.allowed_targets(request)
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES, targets=targets)
            if form.is_valid():
                try:
                    job = import_job_create(
                        target=form.cleaned_data["target"],
                        file=form.cleaned_data["file"],
                        dry_run=form.cleaned_data["dry_run"],
                        skip_invalid=form.cleaned_data["skip_invalid"],
                        created_by=request.user,
                    )
                except ApplicationError as exc:
                    form.add_error("file", exc.message)
                else:
                    self.log_addition(request, job, [{"added": {}}])
                    return HttpResponseRedirect(reverse("admin:members_importjob_change", args=[job.pk]))
        else:
            form = ImportUploadForm(initial={"target": request.GET.get("target")}, targets=targets)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import a file"),
            "opts": self.opts,
            "form": form,
            "columns": _column_help(targets),
            "inline_max_rows": intcomma(settings.CRM_IMPORT_INLINE_MAX_ROWS),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, self.add_form_template, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._visible_job(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "title": str(job),
            "opts": self.opts,
            "original": job,
            "progress": _progress(job),
            "errors_shown": job.errors[:ERRORS_SHOWN],
            "errors_hidden": max(0, len(job.errors) - ERRORS_SHOWN),
            "has_delete_permission": self.has_delete_permission(request, job),
        }
        return TemplateResponse(request, self.change_form_template, context)

    def progress_view(self, request, object_id):
        return JsonResponse(_progress(self._visible_job(request, object_id)))

    def invalid_rows_view(self, request, object_id):
        job = self._visible_job(request, object_id)
        if not job.invalid_rows_file:
            raise Http404
        return FileResponse(
            job.invalid_rows_file.open("rb"),
            as_attachment=True,
            filename=os.path.basename(job.invalid_rows_file.name),
        )

    def errors_view(self, request, object_id):
        """Every error of a job as CSV, for files with more errors than the page lists."""
        job = self._visible_job(request, object_id)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([_("line"), _("column"), _("value"), _("reason")])
        for error in job.errors:
            writer.writerow([error["line"], *(importing.csv_safe(error[key]) for key in ("column", "value", "reason"))])
        response = HttpResponse(buffer.getvalue().encode("utf-8-sig"), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        return response

    def _visible_job(self, request, object_id) -> ImportJob:
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return job


def _progress(job: ImportJob) -> dict:
    writing = job.status == ImportJob.Status.RUNNING and job.total_rows and job.processed_rows >= job.total_rows
    return {
        "status": job.status,
        "status_display": str(job.get_status_display()),
        "processed_rows": job.processed_rows,
        "total_rows": job.total_rows,
        "percent": job.progress_percent,
        "finished": job.is_finished,
        "text": str(
            _("Writing to the database…")
            if writing
            else _("%(processed)s of about %(total)s rows read")
            % {"processed": intcomma(job.processed_rows), "total": intcomma(job.total_rows)}
        ),
    }


def _column_help(targets: list[str]) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """For the upload page: per target, each field's Chinese and English header and if it is required."""
    specs = {
        ImportJob.Target.MEMBERS: (importing.MEMBER_COLUMNS, ()),
        ImportJob.Target.EVENTS: (importing.EVENT_COLUMNS, importing.EVENT_REQUIRED_FIELDS),
    }
    help_rows = []
    for target in targets:
        aliases, required = specs[target]
        fields = [
            (next(alias for alias in names if not alias.isascii()), names[0], name in required)
            for name, names in aliases.items()
        ]
        help_rows.append((ImportJob.Target(target).label, fields))
    return help_rows
