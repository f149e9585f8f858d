"""Admin of the health dashboard: targets and alarm limits, snapshots, alarms and tasks."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from crm.health.models import Alarm, DashboardTask, HealthSettings, HealthSnapshot
from crm.health.services import alarm_acknowledge, alarm_resolve, health_settings_save


@admin.register(HealthSettings)
class HealthSettingsAdmin(BaseModelAdmin):
    fieldsets = (
        (
            _("Targets"),
            {
                "fields": (
                    "window_days",
                    "activity_rate_target",
                    "ltv_multiple_target",
                    "open_rate_target",
                    "streak_share_target",
                    "exit_rate_target",
                )
            },
        ),
        (_("Quiet groups: topic day"), {"fields": ("group_messages_min", "group_messages_days")}),
        (
            _("Complaints rising"),
            {"fields": ("complaint_period_days", "complaint_increase_percent", "complaint_min_count", "service_lead")},
        ),
        (_("Group exits high"), {"fields": ("exit_rate_max",)}),
        (
            _("Channel failing"),
            {"fields": ("channel_window_minutes", "channel_failure_percent", "channel_min_attempts")},
        ),
    )
    raw_id_fields = ("service_lead",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # There is one row: the list would only be a link to it.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:health_healthsettings_change", args=[HealthSettings.load().pk]))

    def save_model(self, request, obj, form, change):
        health_settings_save(config=obj)


@admin.register(HealthSnapshot)
class HealthSnapshotAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = (
        "day",
        "activity_rate",
        "ltv_multiple",
        "open_rate",
        "streak_share",
        "exit_rate",
        "group_messages",
        "complaints",
        "points_liability_yuan",
        "sla_breaches",
    )
    date_hierarchy = "day"
    ordering = ("-day",)


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("__str__", "raised_at", "cleared_at", "acknowledged_at", "acknowledged_by", "resolved_at")
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    list_select_related = ("acknowledged_by", "resolved_by")
    fields = (
        "kind",
        "subject",
        "raised_at",
        "last_seen_at",
        "cleared_at",
        "measured",
        "what_it_did",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "note",
    )
    readonly_fields = fields
    actions = ["acknowledge", "resolve"]

    @admin.display(description=_("what it did"))
    def what_it_did(self, obj: Alarm):
        return format_html_join("", "<p>{}</p>", ((line,) for line in obj.action_lines()))

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("health.acknowledge_alarm")

    def _each(self, request, queryset, service, done_message):
        done = 0
        for alarm_id in queryset.values_list("pk", flat=True)[:100]:
            try:
                service(alarm_id=alarm_id, actor=request.user)
            except ApplicationError as error:
                self.message_user(request, f"#{alarm_id}: {error.message}", messages.WARNING)
            else:
                done += 1
        self.message_user(request, done_message % {"count": done}, messages.SUCCESS)

    @admin.action(permissions=["acknowledge"], description=_("Acknowledge the selected alarms"))
    def acknowledge(self, request, queryset):
        self._each(request, queryset, alarm_acknowledge, _("Alarms acknowledged: %(count)s"))

    @admin.action(permissions=["acknowledge"], description=_("Resolve the selected alarms (undo what they did)"))
    def resolve(self, request, queryset):
        self._each(request, queryset, alarm_resolve, _("Alarms resolved: %(count)s"))


@admin.register(DashboardTask)
class DashboardTaskAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("__str__", "status", "created_at", "closed_at", "closed_by")
    list_filter = ("status", "kind")
    list_select_related = ("closed_by",)
