"""Admin of the crisis desk: tickets with their clocks and timeline, the 3T deadlines, the settings.

Tickets change only through crm.desk.services: the change page edits a draft's wording and
audience, and every step (announce, timetable, compensation, pause, resume, reassign, close,
reopen) is a form on the page that posts to the desk's action view, like the staff ticket page.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from crm.desk import forms as desk_forms
from crm.desk import services, sla
from crm.desk.models import DeskSettings, SlaPolicy, Ticket, TicketEvent, TicketStatus


@admin.register(SlaPolicy)
class SlaPolicyAdmin(BaseModelAdmin):
    list_display = ("severity", "tell_minutes", "time_minutes", "trust_minutes", "warn_percent")
    fields = ("severity", "tell_minutes", "time_minutes", "trust_minutes", "warn_percent")

    def get_readonly_fields(self, request, obj=None):
        return ("severity",) if obj else ()

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DeskSettings)
class DeskSettingsAdmin(BaseModelAdmin):
    fields = ("api_min_severity", "api_attach_hours")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:desk_desksettings_change", args=[DeskSettings.load().pk]))


class TicketEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TicketEvent
    fields = ("at", "kind", "clock", "actor", "note", "data")
    readonly_fields = fields
    ordering = ("at", "id")
    extra = 0
    verbose_name_plural = _("timeline")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


def _clocks_html(ticket: Ticket) -> str:
    states = sla.ticket_clocks(ticket, now=timezone.now())
    if not states:
        return "–"
    labels = {"tell": _("Tell"), "time": _("Time"), "trust": _("Trust")}
    return format_html_join(
        " · ",
        '<span class="desk-clock desk-{}" title="{}">{} {}</span>',
        (
            (
                state.state,
                timezone.localtime(state.due_at).strftime("%Y-%m-%d %H:%M"),
                labels[state.name],
                _state_text(state),
            )
            for state in states
        ),
    )


def _state_text(state: sla.ClockState) -> str:
    if state.state in (sla.DONE, sla.DONE_LATE):
        return "✓" if state.state == sla.DONE else str(_("late"))
    minutes = abs(state.seconds_left) // 60
    text = f"{minutes // 60}h{minutes % 60:02d}m"
    return f"-{text}" if state.seconds_left < 0 else text


class TicketAdminForm(forms.ModelForm):
    """Checks the affected members are given one way, before the service is called."""

    class Meta:
        model = Ticket
        fields = ["title", "description", "severity", "owner", "watchers", "segment", "member_numbers", "group"]

    def clean(self):
        data = super().clean()
        try:
            services.audience_check(
                segment=data.get("segment"), member_numbers=data.get("member_numbers", ""), group=data.get("group", "")
            )
        except ApplicationError as error:
            raise forms.ValidationError(error.message) from error
        return data


@admin.register(Ticket)
class TicketAdmin(BaseModelAdmin):
    form = TicketAdminForm
    list_display = (
        "id",
        "title",
        "severity",
        "status",
        "source",
        "owner",
        "affected_count",
        "clocks",
        "compensation_status",
        "opened_at",
    )
    list_display_links = ("id", "title")
    list_filter = ("severity", "status", "source", "owner", "compensation_status")
    list_select_related = ("owner",)
    search_fields = ("title",)
    date_hierarchy = "opened_at"
    inlines = (TicketEventInline,)
    raw_id_fields = ("segment", "owner")
    filter_horizontal = ("watchers",)
    change_form_template = "desk/admin_ticket_change_form.html"
    readonly_fields = (
        "status",
        "source",
        "opened_by",
        "opened_at",
        "clocks",
        "affected_count",
        "paused_at",
        "paused_seconds",
        "tell_done_at",
        "time_done_at",
        "trust_done_at",
        "closed_at",
        "announcement",
        "timetable",
        "compensation_kind",
        "compensation_points",
        "compensation_batch",
        "compensation_status",
        "compensation_requested_by",
        "compensation_approved_by",
        "compensation_issued",
        "tell_campaign",
        "time_campaign",
        "staff_page",
    )

    @admin.display(description=_("3T clocks"))
    def clocks(self, obj: Ticket) -> str:
        return _clocks_html(obj)

    @admin.display(description=_("staff page"))
    def staff_page(self, obj: Ticket) -> str:
        if obj.pk is None:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("desk:ticket", args=[obj.pk]), _("Open the ticket page"))

    def get_fields(self, request, obj=None):
        editable = ["title", "description", "severity", "owner", "watchers"]
        audience = ["segment", "member_numbers", "group"]
        if obj is None or obj.status == TicketStatus.DRAFT:
            return [*editable, *audience, "staff_page"]
        return [*editable, "audience_kind", *audience, *[f for f in self.readonly_fields if f != "status"], "status"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != TicketStatus.DRAFT:
            # Opened: the affected members and severity (its deadlines) are fixed; work it through the actions.
            return (*self.readonly_fields, "severity", "audience_kind", "segment", "member_numbers", "group")
        return ("staff_page",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        audience = {
            "segment": form.cleaned_data.get("segment"),
            "member_numbers": form.cleaned_data.get("member_numbers", ""),
            "group": form.cleaned_data.get("group", ""),
        }
        try:
            if not change:
                ticket = services.ticket_open(
                    title=obj.title,
                    description=obj.description,
                    severity=obj.severity,
                    source="staff",
                    opened_by=request.user,
                    owner=obj.owner,
                    draft=True,
                    **audience,
                )
                obj.pk = ticket.pk
                obj.refresh_from_db()
                return
            if obj.status == TicketStatus.DRAFT:
                services.ticket_draft_update(ticket=obj, actor=request.user, **audience)
            services.ticket_details_update(
                ticket=obj,
                actor=request.user,
                title=obj.title,
                description=obj.description,
                severity=obj.severity,
                owner=obj.owner,
            )
        except ApplicationError as error:
            messages.error(request, error.message)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        ticket = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if ticket is not None:
            can_approve = (
                request.user.has_perm(services.APPROVE_PERMISSION)
                and ticket.compensation_status == "requested"
                and ticket.compensation_requested_by_id != request.user.pk
            )
            extra_context.update(
                {
                    "desk_ticket": ticket,
                    "can_work": request.user.has_perm(services.CHANGE_PERMISSION),
                    "can_approve": can_approve,
                    "active": ticket.status in (TicketStatus.OPEN, TicketStatus.PAUSED),
                    "announce_form": desk_forms.NoticeForm(prefix="announce"),
                    "timetable_form": desk_forms.NoticeForm(prefix="timetable"),
                    "compensation_form": desk_forms.CompensationForm(),
                    "reason_form": desk_forms.ReasonForm(),
                    "reassign_form": desk_forms.ReassignForm(),
                    "note_form": desk_forms.NoteForm(),
                    "next": request.get_full_path(),
                }
            )
        return super().change_view(request, object_id, form_url, extra_context)
