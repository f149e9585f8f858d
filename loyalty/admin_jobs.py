"""Runs of loyalty's jobs in the admin: read-only, newest first, failures easy to find; the grants
to a member list staff start from the member admin show their progress (the page reloads itself
while a run is going)."""

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from loyalty.models import LoyaltyJobRun


@admin.register(LoyaltyJobRun)
class LoyaltyJobRunAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("started_at", "job", "status", "progress_bar", "finished_at", "took", "rows", "short_error")
    list_filter = ("job", "status")
    list_select_related = ()
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-started_at", "-id")
    sortable_by = ()
    fields = (
        "job",
        "status",
        "progress_bar",
        "requested_by",
        "member_count",
        "params",
        "started_at",
        "finished_at",
        "took",
        "rows",
        "details",
        "error",
    )
    readonly_fields = fields

    @admin.display(description=_("progress"))
    def progress_bar(self, run: LoyaltyJobRun) -> str:
        if not run.key:  # periodic jobs report no progress
            return "-"
        return format_html('<progress value="{}" max="100"></progress> {}%', run.progress, run.progress)

    @admin.display(description=_("took"))
    def took(self, run: LoyaltyJobRun) -> str:
        duration = run.duration
        if duration is None:
            return "-"
        seconds = duration.total_seconds()
        return f"{seconds:,.1f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"

    @admin.display(description=_("error"))
    def short_error(self, run: LoyaltyJobRun) -> str:
        return run.error.splitlines()[0][:120] if run.error else ""
