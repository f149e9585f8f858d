"""import_members FILE [--dry-run] [--skip-invalid]: the admin's member import, from a shell."""

import sys
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from django.utils.translation import gettext as _
from tqdm import tqdm

from crm.core.exceptions import ApplicationError
from members.models import ImportJob
from members.services import import_job_create


class ImportCommand(BaseCommand):
    """Runs an ImportJob in this process with a progress bar, then prints its outcome.

    The exit status is non-zero when rows were invalid and nothing was written (and on failure),
    so scripts can tell a rejected file from an imported one.
    """

    target: str

    def add_arguments(self, parser):
        parser.add_argument("file", help=_("CSV or XLSX file, headers in Chinese or English"))
        parser.add_argument("--dry-run", action="store_true", help=_("check the file and report; write nothing"))
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help=_("import the valid rows and write the invalid ones to a file to correct"),
        )

    def handle(self, *args, file: str, dry_run: bool, skip_invalid: bool, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(_("No such file: %(path)s") % {"path": path})
        bar = None

        def on_progress(processed: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit=_("rows"), file=sys.stderr, disable=None)
            bar.total = max(bar.total, processed)
            bar.update(processed - bar.n)

        try:
            with path.open("rb") as handle:
                job = import_job_create(
                    target=self.target,
                    file=File(handle, name=path.name),
                    dry_run=dry_run,
                    skip_invalid=skip_invalid,
                    inline=True,
                    on_progress=on_progress,
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        finally:
            if bar is not None:
                bar.close()
        self._report(job)

    def _report(self, job: ImportJob) -> None:
        self.stdout.write(
            _(
                "%(rows)d rows: %(created)d created, %(updated)d updated, %(unchanged)d unchanged, "
                "%(duplicates)d duplicates, %(invalid)d invalid."
            )
            % {
                "rows": job.total_rows,
                "created": job.created_count,
                "updated": job.updated_count,
                "unchanged": job.unchanged_count,
                "duplicates": job.duplicate_count,
                "invalid": job.invalid_count,
            }
        )
        for error in job.errors:
            self.stdout.write(_("line %(line)d, %(column)s “%(value)s”: %(reason)s") % error)
        if job.ignored_columns:
            self.stdout.write(_("Ignored columns: %(columns)s") % {"columns": ", ".join(job.ignored_columns)})
        if job.invalid_rows_file:
            self.stdout.write(
                _("Invalid rows, with a reason column, to correct and import again: %(path)s")
                % {"path": job.invalid_rows_file.path}
            )
        self.stdout.write(
            _("Kept as import #%(id)d: %(url)s")
            % {"id": job.pk, "url": reverse("admin:members_importjob_change", args=[job.pk])}
        )
        if job.status == ImportJob.Status.FAILED:
            raise CommandError(_("The import failed: %(failure)s") % {"failure": job.failure})
        if job.status == ImportJob.Status.REJECTED:
            raise CommandError(
                _("Nothing was written: %(invalid)d invalid rows. Correct them, or use --skip-invalid.")
                % {"invalid": job.invalid_count}
            )
        if job.dry_run:
            message = _("Dry run: nothing was written.")
            if job.invalid_count:
                raise CommandError(message)
            self.stdout.write(message)
        else:
            self.stdout.write(self.style.SUCCESS(_("Done.")))


class Command(ImportCommand):
    help = "Import or update members from a CSV or XLSX file (upsert by member number, else by phone)."
    target = ImportJob.Target.MEMBERS
