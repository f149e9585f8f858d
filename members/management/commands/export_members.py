"""Export every member to CSV or XLSX, streamed in chunks, with a progress bar on stderr.

    python manage.py export_members [--format csv|xlsx] [--output FILE] [--unmasked]

Phones are masked (138****5678) unless --unmasked is given. --output - writes to stdout.
"""

import logging
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from members.models import Member
from members.resources import EXPORT_FORMATS, MemberResource, members_export_write

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Export all members to CSV or XLSX. Phones are masked unless --unmasked is given."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="csv", dest="file_format")
        parser.add_argument(
            "--output", help="File to write; '-' for stdout. Default: members-<date>-<time>.<format> here."
        )
        parser.add_argument("--unmasked", action="store_true", help="Write full phone numbers.")

    def handle(self, *, file_format: str, output: str | None, unmasked: bool, **options):
        output = output or f"members-{timezone.localtime():%Y%m%d-%H%M%S}.{file_format}"
        if output == "-" and file_format == "xlsx" and sys.stdout.isatty():
            raise CommandError("An XLSX file is binary: give --output FILE or redirect stdout.")
        if unmasked:
            # Full phone numbers leave the system in this file; say so where operators look.
            logger.warning("export_members with full phone numbers to %s", output)
        # Counting once for the progress bar's total is cheap next to writing every row.
        with tqdm(
            total=Member.objects.count(),
            unit=" members",
            file=sys.stderr,
            disable=options["verbosity"] == 0,
        ) as bar:
            if output == "-":
                written = self._write(sys.stdout.buffer, file_format, unmasked, bar.update)
                sys.stdout.flush()
            else:
                with Path(output).open("wb") as stream:
                    written = self._write(stream, file_format, unmasked, bar.update)
        if output != "-" and options["verbosity"] > 0:
            self.stderr.write(self.style.SUCCESS(f"{written} members written to {output}"))

    def _write(self, stream, file_format, unmasked, progress) -> int:
        return members_export_write(
            stream=stream,
            file_format=file_format,
            resource=MemberResource(unmasked_phones=unmasked),
            progress=progress,
        )
