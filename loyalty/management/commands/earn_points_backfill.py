"""Earn points for events already recorded, by the earn rules active now.

    python manage.py earn_points_backfill [--from-id N] [--to-id N] [--batch-size 50000] [--no-tiers]

Set-based by ranges of event ids; each range commits on its own, so a run stopped halfway is
resumed by running it again, and events already earned are skipped (earn:<event id>). Refunds in
the range take back their purchases' points. Afterwards the members whose points or spend moved
are moved up to any tier they now reach (--no-tiers skips it). The run is recorded as a
LoyaltyJobRun, shown in the admin.
"""

from django.core.management.base import BaseCommand

from loyalty.models import LoyaltyJob
from loyalty.services import points_earn_backfill, tiers_upgrade_if_qualified
from loyalty.services.jobs import job_run


class Command(BaseCommand):
    help = "Earn points for recorded events by the active earn rules (idempotent, by event id ranges)."

    def add_arguments(self, parser):
        parser.add_argument("--from-id", type=int, dest="first_id")
        parser.add_argument("--to-id", type=int, dest="last_id")
        parser.add_argument("--batch-size", type=int, default=50_000)
        parser.add_argument("--no-tiers", action="store_true", help="Do not check tier upgrades afterwards.")

    def handle(self, *, first_id, last_id, batch_size, no_tiers, **options):
        def work():
            result = points_earn_backfill(first_id=first_id, last_id=last_id, batch_size=batch_size)
            upgrades = 0 if no_tiers else tiers_upgrade_if_qualified(member_ids=result.member_ids)
            counts = {
                "entries": result.entries,
                "points": result.points,
                "refunds": result.refunds,
                "tier_upgrades": upgrades,
            }
            return result.entries, counts

        run = job_run(job=LoyaltyJob.EARN_BACKFILL, work=work)
        counts = run.details
        self.stdout.write(
            f"{counts['entries']} entries, {counts['points']} points, {counts['refunds']} refunds, "
            f"{counts['tier_upgrades']} tier upgrades (run #{run.pk})"
        )
