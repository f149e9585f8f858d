"""import_events FILE [--dry-run] [--skip-invalid]: the admin's behaviour-event import, from a shell."""

from members.management.commands.import_members import ImportCommand
from members.models import ImportJob


class Command(ImportCommand):
    help = "Record behaviour events from a CSV or XLSX file; events already recorded are skipped."
    target = ImportJob.Target.EVENTS
