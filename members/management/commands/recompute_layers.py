"""Recompute RFM, value layers, lifecycle stages, churn scores and automatic tags now.

    python manage.py recompute_layers [--full | --incremental] [--no-segments]

The same job as the beat schedules, with a progress bar on stderr. --full (the default)
recomputes every member; --incremental only members with events since the last run. Scheduled
segments are refreshed afterwards unless --no-segments is given.
"""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from members.models_layers import LayerJobRun
from members.services.layers import layers_recompute_full, layers_recompute_incremental
from members.services.segments import segments_refresh_all


class Command(BaseCommand):
    help = "Recompute layers, stages and churn scores (--full, the default, or --incremental)."

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--full", action="store_true", help="Every member (the default).")
        mode.add_argument("--incremental", action="store_true", help="Members with new events since the last run.")
        parser.add_argument("--no-segments", action="store_true", help="Do not refresh scheduled segments.")

    def handle(self, *, full: bool, incremental: bool, no_segments: bool, **options):
        quiet = options["verbosity"] == 0
        with tqdm(total=1, unit=" steps", file=sys.stderr, disable=quiet) as bar:

            def progress(run: LayerJobRun) -> None:
                if run.total and bar.total != run.total:
                    bar.total = run.total
                bar.set_description(run.step or run.get_kind_display())
                bar.update(max(run.done - bar.n, 0))

            if incremental:
                run = layers_recompute_incremental(progress=progress)
            else:
                run = layers_recompute_full(progress=progress)
        if run is None:
            self.stderr.write("A full recompute is under way; its results will include the changed members.")
            return
        if run.status != LayerJobRun.Status.SUCCEEDED:
            raise CommandError(f"Run #{run.pk} {run.get_status_display()}: {run.error}")
        if not no_segments:
            segments_refresh_all()
        if not quiet:
            self.stderr.write(
                self.style.SUCCESS(f"Run #{run.pk} ({run.get_kind_display()}): {run.rows} member scores written.")
            )
