"""import_events FILE [--dry-run] [--skip-invalid]: the admin's behaviour-event import, from a shell."""

from django.utils.translation import gettext_lazy as _

from members.management.commands.import_members import ImportCommand
from members.models import ImportJob


class Command(ImportCommand):
    help = _("Record behaviour events from a CSV or XLSX file; events already recorded are skipped.")
    target = ImportJob.Target.EVENTS
