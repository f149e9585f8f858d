"""Admin for layers, churn scores, recompute runs and segments (issue 4).

Registered from members/admin.py's last line. Every write calls a service; the lists read
only indexed columns and never count whole tables (BaseModelAdmin's paginator).
"""

import json
import tempfile

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from members.models import Tag
from members.models_layers import (
    AutomaticTag,
    LayerJobRun,
    LayerSettings,
    LayerSnapshot,
    MemberScore,
    Segment,
    SegmentSnapshot,
    StageTransition,
)
from members.resources import MemberResource, members_export_write
from members.segment_rules import SegmentRuleError, describe_rules, editor_schema, validate_rules
from members.services.layers import churn_reasons_text
from members.services.segments import segment_members, segment_preview, segment_refresh, segment_save

SEGMENT_EXPORT_MAX_ROWS = 100_000
RULE_EDITOR_STRINGS = {
    "and": _("all of (AND)"),
    "or": _("any of (OR)"),
    "addCondition": _("+ condition"),
    "addGroup": _("+ group"),
    "remove": _("remove"),
    "days": _("days"),
    "inLast": _("in the last"),
    "anySubKind": _("any sub-kind"),
    "yes": _("yes"),
    "no": _("no"),
    "members": _("members match"),
    "about": _("about"),
    "counting": _("Counting…"),
    "failed": _("The count failed."),
    "commaSeparated": _("comma-separated"),
}


@admin.register(LayerSettings)
class LayerSettingsAdmin(BaseModelAdmin):
    """One row of thresholds: the list opens it directly."""

    fieldsets = (
        (
            _("RFM and value layers"),
            {"fields": ("rfm_window_days", "score_buckets", "high_value_percent", "potential_percent")},
        ),
        (_("Lifecycle stages"), {"fields": ("new_member_days", "at_risk_days", "churned_days", "silent_days")}),
        (_("Churn risk"), {"fields": ("trend_days", "purchase_drop_percent", "low_p_alive_percent")}),
        (
            _("Automatic tags"),
            {
                "fields": (
                    "high_spender_yuan",
                    "live_lover_days",
                    "live_lover_min_watches",
                    "content_preference_days",
                    "content_preference_min_events",
                    "points_expiring_days",
                )
            },
        ),
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        settings_row = LayerSettings.load()
        return HttpResponseRedirect(reverse("admin:members_layersettings_change", args=[settings_row.pk]))

    def save_model(self, request, obj, form, change):
        from members.services.layers import layer_settings_update

        layer_settings_update(
            settings_row=obj, fields={name: form.cleaned_data[name] for name in form.changed_data}, actor=request.user
        )


@admin.register(MemberScore)
class MemberScoreAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = (
        "member",
        "value_layer",
        "lifecycle_stage",
        "rfm_score",
        "r_score",
        "f_score",
        "m_score",
        "p_alive_percent",
        "churn_risk",
        "reasons",
        "computed_at",
    )
    list_filter = ("value_layer", "lifecycle_stage")
    list_select_related = ("member",)
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ("member",)
    ordering = ("-churn_risk", "-member")
    sortable_by = ("churn_risk", "rfm_score")

    search_fields = ("member__external_id",)
    search_help_text = _("Member number, exactly.")

    def get_search_results(self, request, queryset, search_term):
        # An exact match on the unique member number, never a LIKE scan of a million members.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(member__external_id=term), False

    @admin.display(description=_("P(alive)"))
    def p_alive_percent(self, score: MemberScore) -> str:
        return "" if score.p_alive is None else f"{score.p_alive:.0%}"

    @admin.display(description=_("churn-risk reasons"))
    def reasons(self, score: MemberScore) -> str:
        return churn_reasons_text(score.churn_reasons)


@admin.register(StageTransition)
class StageTransitionAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("at", "member", "from_stage", "to_stage")
    list_filter = ("to_stage", "from_stage", ("at", admin.DateFieldListFilter))
    list_select_related = ("member",)
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ("member",)
    ordering = ("-at",)
    sortable_by = ("at",)


@admin.register(LayerJobRun)
class LayerJobRunAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    change_list_template = "members/admin/layerjobrun_change_list.html"
    list_display = ("__str__", "status", "progress", "step", "started_at", "finished_at", "rows", "short_error")
    list_filter = ("kind", "status")
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ()
    ordering = ("-started_at", "-id")
    readonly_fields = (
        "kind",
        "status",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "step",
        "total",
        "done",
        "rows",
        "error",
        "events_until",
        "cut_points",
        "model_params",
        "started_by",
    )

    @admin.display(description=_("progress"))
    def progress(self, run: LayerJobRun) -> str:
        return format_html('<progress max="100" value="{}"></progress> {}%', run.progress_percent, run.progress_percent)

    @admin.display(description=_("error"))
    def short_error(self, run: LayerJobRun) -> str:
        return (run.error or "")[:120]

    def get_urls(self):
        urls = [
            path("start/", self.admin_site.admin_view(require_POST(self.start_view)), name="members_layerjobrun_start")
        ]
        return urls + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        extra_context["can_start_run"] = request.user.has_perm("members.add_layerjobrun")
        extra_context["has_running"] = LayerJobRun.objects.filter(status=LayerJobRun.Status.RUNNING).exists()
        return super().changelist_view(request, extra_context)

    def start_view(self, request):
        if not request.user.has_perm("members.add_layerjobrun"):
            raise PermissionDenied
        from members.tasks import recompute_layers_full, recompute_layers_incremental

        task = recompute_layers_incremental if request.POST.get("kind") == "incremental" else recompute_layers_full
        transaction.on_commit(task.delay)
        self.message_user(request, _("The recompute is queued; its progress shows here."), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:members_layerjobrun_changelist"))


@admin.register(LayerSnapshot)
class LayerSnapshotAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Listed on the admin index as "layer and stage charts": opens the staff page with the charts."""

    def changelist_view(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("members:layers_dashboard"))


@admin.register(AutomaticTag)
class AutomaticTagAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("tag", "rule", "argument")
    list_select_related = ("tag",)
    ordering = ("rule", "argument")


# Segments ------------------------------------------------------------------------------------


class SegmentForm(forms.ModelForm):
    rules = forms.JSONField(
        label=_("rules"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField", "spellcheck": "false"}),
        help_text=_("Edited with the rule editor above; the JSON is shown for reference and copying."),
    )

    class Meta:
        model = Segment
        fields = ("name", "description", "rules", "auto_refresh")

    def clean_rules(self):
        try:
            return validate_rules(self.cleaned_data.get("rules"))
        except SegmentRuleError as error:
            raise forms.ValidationError(error.message) from error


class SegmentSnapshotInline(admin.TabularInline):
    model = SegmentSnapshot
    fields = ("computed_at", "members", "added", "removed")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = _("size history (latest first)")
    ordering = ("-computed_at",)

    def get_queryset(self, request):
        # The latest computations only; the full history stays in the table.
        queryset = super().get_queryset(request)
        latest = list(queryset.order_by("-computed_at").values_list("pk", flat=True)[:20])
        return queryset.filter(pk__in=latest)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Segment)
class SegmentAdmin(BaseModelAdmin):
    form = SegmentForm
    change_form_template = "admin/members/segment/change_form.html"
    list_display = ("name", "rules_text", "member_count", "last_computed_at", "auto_refresh")
    list_filter = ("auto_refresh",)
    search_fields = ("name",)
    ordering = ("name",)
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ()
    readonly_fields = ("member_count", "last_computed_at", "created_by", "created_at", "updated_at")
    inlines = (SegmentSnapshotInline,)
    actions = ("refresh_members", "export_csv", "export_xlsx")

    def get_inlines(self, request, obj):
        # A segment not saved yet has no size history.
        return self.inlines if obj is not None else ()

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ("name", "description", "rules", "auto_refresh")})]
        if obj is not None:
            fieldsets.append((_("Membership"), {"fields": ("member_count", "last_computed_at")}))
            fieldsets.append(
                (_("Record"), {"classes": ("collapse",), "fields": ("created_by", "created_at", "updated_at")})
            )
        return fieldsets

    @admin.display(description=_("rules"))
    def rules_text(self, segment: Segment) -> str:
        return describe_rules(segment.rules)

    def get_urls(self):
        urls = [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="members_segment_preview"),
        ]
        return urls + super().get_urls()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        schema = editor_schema()
        schema["tags"] = [
            {"value": pk, "label": name} for pk, name in Tag.objects.order_by("name").values_list("pk", "name")[:1000]
        ]
        for field in schema["fields"]:
            if field["name"] == "tier":
                from loyalty.models import Tier

                field["choices"] = [
                    {"value": code, "label": name}
                    for code, name in Tier.objects.order_by("rank").values_list("code", "name")
                ]
        context["rule_editor_schema"] = schema
        context["rule_editor_preview_url"] = reverse("admin:members_segment_preview")
        context["rule_editor_strings"] = {key: str(text) for key, text in RULE_EDITOR_STRINGS.items()}
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def save_model(self, request, obj, form, change):
        segment_save(segment=obj, actor=request.user)

    def response_post_save_add(self, request, obj):
        # A new segment is materialized at once so staff see its size and can export it.
        self._refresh(request, obj)
        return super().response_post_save_add(request, obj)

    def preview_view(self, request):
        """POST {"rules": …} → {"count", "exact", "sample"} or {"error", "path"} with status 400."""
        if request.method != "POST":
            return JsonResponse({"error": "POST only"}, status=405)
        if not (
            self.has_add_permission(request) or self.has_change_permission(request) or self.has_view_permission(request)
        ):
            raise PermissionDenied
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": str(_("The request is not valid JSON."))}, status=400)
        try:
            preview = segment_preview(rules=body.get("rules") if isinstance(body, dict) else body)
        except ApplicationError as error:
            return JsonResponse({"error": error.message, "path": error.extra.get("path", "")}, status=400)
        return JsonResponse({"count": preview.count, "exact": preview.exact, "sample": preview.sample})

    # Actions -----------------------------------------------------------------------------------

    @admin.action(permissions=["refresh"], description=_("Recompute the members of the selected segments now"))
    def refresh_members(self, request, queryset):
        for segment in queryset.order_by("pk"):
            self._refresh(request, segment)

    def has_refresh_permission(self, request) -> bool:
        return request.user.has_perm("members.refresh_segment")

    def _refresh(self, request, segment: Segment) -> None:
        try:
            snapshot = segment_refresh(segment=segment)
        except ApplicationError as error:
            self.message_user(request, f"{segment}: {error.message}", messages.ERROR)
            return
        self.message_user(
            request,
            _("%(segment)s: %(members)s members (%(added)s added, %(removed)s removed).")
            % {"segment": segment, "members": snapshot.members, "added": snapshot.added, "removed": snapshot.removed},
            messages.SUCCESS,
        )

    @admin.action(permissions=["export"], description=_("Export the members of the selected segment (CSV)"))
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.action(permissions=["export"], description=_("Export the members of the selected segment (Excel)"))
    def export_xlsx(self, request, queryset):
        return self._export(request, queryset, "xlsx")

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("members.export_members")

    def _export(self, request, queryset, file_format: str):
        segments = list(queryset[:2])
        if len(segments) != 1:
            self.message_user(request, _("Select exactly one segment to export."), messages.ERROR)
            return None
        segment = segments[0]
        if (segment.member_count or 0) > SEGMENT_EXPORT_MAX_ROWS:
            self.message_user(
                request,
                _(
                    "The segment has more than %(max)s members; ask an administrator to export it with the "
                    "export_members command."
                )
                % {"max": SEGMENT_EXPORT_MAX_ROWS},
                messages.ERROR,
            )
            return None
        output = tempfile.TemporaryFile()
        members_export_write(
            stream=output,
            file_format=file_format,
            resource=MemberResource.for_user(request.user),
            queryset=segment_members(segment=segment),
        )
        output.seek(0)
        filename = f"segment-{segment.pk}-{timezone.localtime():%Y%m%d-%H%M%S}.{file_format}"
        return FileResponse(output, as_attachment=True, filename=filename)
