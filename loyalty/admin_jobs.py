"""Runs of loyalty's periodic jobs in the admin: read-only, newest first, failures easy to find."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from loyalty.models import LoyaltyJobRun


@admin.register(LoyaltyJobRun)
class LoyaltyJobRunAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("started_at", "job", "status", "finished_at", "took", "rows", "short_error")
    list_filter = ("job", "status")
    list_select_related = ()
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-started_at", "-id")
    sortable_by = ()
    fields = ("job", "status", "started_at", "finished_at", "took", "rows", "details", "error")
    readonly_fields = fields

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
