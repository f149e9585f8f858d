"""Take the health snapshots missing among the last N days, e.g. right after installing."""

from django.core.management.base import BaseCommand, CommandError

from crm.core.exceptions import ApplicationError
from crm.health.services import snapshots_backfill


class Command(BaseCommand):
    help = (
        "Computes the daily health snapshots missing among the last N days from the behaviour log "
        "(days already recorded are kept). LTV and points liability are recorded for yesterday only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=90, help="How many days back from yesterday (default 90).")

    def handle(self, *args, days: int, **options):
        try:
            taken = snapshots_backfill(days=days)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(f"health snapshots taken: {taken}")
