"""Campaigns in the admin: drafts with their messages, status buttons per role, a preview for a real
member, and the outbox (read-only) with its filters. Every write goes through campaigns.services."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from campaigns.models import (
    Campaign,
    CampaignTransition,
    CampaignVariant,
    ChannelConfig,
    Delivery,
    InAppMessage,
    JourneyStep,
    MessageTemplate,
    OutboxSettings,
)
from campaigns.selectors import campaign_audience_sample, campaign_results, delivery_counts
from campaigns.services import (
    APPROVE_PERMISSION,
    CHANGE_PERMISSION,
    TRANSITIONS,
    campaign_actions_allowed,
    campaign_editable,
    campaign_save,
    campaign_transition,
    channel_fallback_activate,
    channel_fallback_clear,
    message_template_save,
)
from campaigns.templating import message_context, render, template_errors
from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from members.models import Member
from members.resources import mask_phone

FUNNEL_STAGES = {
    "assigned": _("members"),
    "sent": _("sent"),
    "delivered": _("delivered"),
    "opened": _("opened"),
    "clicked": _("clicked"),
    "converted": _("converted"),
}
SAMPLE_MEMBER = Member(name="欧阳娜娜娜", external_id="M000000000", city="乌鲁木齐")


def _editable(campaign) -> bool:
    return campaign is None or campaign_editable(status=campaign.status, kind=campaign.kind)


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ("variant", "step", "channel", "language", "subject", "body")
        widgets = {"body": forms.Textarea(attrs={"rows": 4, "cols": 60})}

    def clean(self):
        # Shown next to the message as staff save it, long before anything is scheduled.
        cleaned = super().clean()
        campaign = self.instance.campaign if self.instance.campaign_id else None
        members = [m for m in (campaign_audience_sample(campaign=campaign) if campaign else None, SAMPLE_MEMBER) if m]
        context_campaign = campaign or Campaign(name="…")
        errors = template_errors(
            channel=cleaned.get("channel") or "",
            subject=cleaned.get("subject") or "",
            body=cleaned.get("body") or "",
            contexts=[message_context(member=m, campaign=context_campaign) for m in members],
        )
        if errors:
            raise ValidationError(errors)
        return cleaned


class MessageTemplateInline(admin.StackedInline):
    model = MessageTemplate
    form = MessageTemplateForm
    extra = 0

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and _editable(obj)

    has_add_permission = has_change_permission
    has_delete_permission = has_change_permission


class CampaignVariantInline(admin.TabularInline):
    model = CampaignVariant
    extra = 0

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and _editable(obj)

    has_add_permission = has_change_permission
    has_delete_permission = has_change_permission


class JourneyStepInline(admin.TabularInline):
    model = JourneyStep
    extra = 0
    fields = ("key", "value", "tier", "offer_points", "coupon_batch", "badge", "is_active")
    raw_id_fields = ("coupon_batch", "badge")

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and _editable(obj)

    has_add_permission = has_change_permission
    has_delete_permission = has_change_permission


class CampaignTransitionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = CampaignTransition
    fields = ("at", "action", "from_status", "to_status", "actor", "note")
    readonly_fields = fields
    extra = 0


@admin.register(Campaign)
class CampaignAdmin(BaseModelAdmin):
    list_display = ("name", "kind", "status", "channel", "category", "starts_at", "segment")
    list_filter = ("status", "kind", "channel", "category")
    list_select_related = ("segment",)
    search_fields = ("name",)
    raw_id_fields = ("segment", "coupon_batch")
    inlines = (CampaignVariantInline, JourneyStepInline, MessageTemplateInline, CampaignTransitionInline)
    readonly_fields = ("status", "outbox_summary", "results")
    fieldsets = (
        (None, {"fields": ("name", "kind", "status", "category")}),
        (_("Audience"), {"fields": ("segment", "member_numbers")}),
        (_("Schedule (Asia/Shanghai)"), {"fields": ("starts_at", "ends_at", "send_time")}),
        (_("Message"), {"fields": ("channel", "language")}),
        (_("Offer"), {"fields": ("offer_points", "coupon_batch", "offer_multiplier")}),
        (_("A/B test"), {"fields": ("holdout_percent", "conversion_days")}),
        (_("Outbox"), {"fields": ("outbox_summary", "results")}),
    )
    actions = ("approve_selected", "pause_selected", "resume_selected", "cancel_selected")
    change_form_template = "admin/campaigns/campaign/change_form.html"

    def has_change_permission(self, request, obj=None):
        # Only drafts (and paused journeys) are edited; statuses change through the buttons.
        return super().has_change_permission(request, obj) and _editable(obj)

    def has_approve_permission(self, request):
        return request.user.has_perm(APPROVE_PERMISSION)

    def has_pause_permission(self, request):
        return request.user.has_perm(CHANGE_PERMISSION)

    @admin.display(description=_("deliveries"))
    def outbox_summary(self, campaign: Campaign):
        if campaign.pk is None:
            return "-"
        counts = delivery_counts(campaign=campaign)
        if not counts["status"]:
            return _("Nothing planned yet.")
        status_names = dict(Delivery._meta.get_field("status").choices)
        reason_names = dict(Delivery._meta.get_field("skip_reason").choices)
        parts = [f"{status_names.get(k, k)}: {v}" for k, v in sorted(counts["status"].items())]
        parts += [f"{_('skipped')} · {reason_names.get(k, k)}: {v}" for k, v in sorted(counts["skip_reason"].items())]
        return " · ".join(parts)

    @staticmethod
    def _arms(campaign: Campaign):
        """The results per arm, computed once per page (the table and the chart share them)."""
        if campaign.pk is None:
            return []
        if not hasattr(campaign, "_arms"):
            campaign._arms = campaign_results(campaign=campaign)
        return campaign._arms

    @admin.display(description=_("results per variant"))
    def results(self, campaign: Campaign):
        arms = self._arms(campaign)
        if not arms:
            return "-"

        def percent(value):
            return "-" if value is None else f"{value:.1f}%"

        head = format_html(
            "<tr>{}</tr>",
            format_html_join(
                "",
                "<th>{}</th>",
                [
                    (label,)
                    for label in (
                        _("variant"),
                        _("members"),
                        _("sent"),
                        _("delivered"),
                        _("opened"),
                        _("clicked"),
                        _("converted"),
                        _("conversion"),
                        _("uplift"),
                        _("confidence"),
                    )
                ],
            ),
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            [
                (
                    _("control group") if arm.is_control else arm.name,
                    arm.assigned,
                    arm.sent,
                    arm.delivered,
                    arm.opened,
                    arm.clicked,
                    arm.converted,
                    percent(arm.conversion_rate),
                    "-" if arm.uplift is None else f"{arm.uplift:+.1f} pp",
                    percent(None if arm.confidence is None else 100 * arm.confidence),
                )
                for arm in arms
            ],
        )
        return format_html("<table>{}{}</table>", head, body)

    def save_model(self, request, obj, form, change):
        campaign_save(campaign=obj, actor=request.user)

    def save_formset(self, request, form, formset, change):
        if formset.model is not MessageTemplate:
            return super().save_formset(request, form, formset, change)
        # save(commit=False) also fills new/changed/deleted_objects, which the admin's history uses.
        for template in formset.save(commit=False):
            template.campaign = form.instance
            message_template_save(template=template, actor=request.user)
        for template in formset.deleted_objects:
            template.delete()

    def get_urls(self):
        urls = super().get_urls()
        own = [
            path(
                "<int:pk>/transition/<str:action>/",
                self.admin_site.admin_view(self.transition_view),
                name="campaigns_campaign_transition",
            ),
            path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view), name="campaigns_campaign_preview"),
        ]
        return own + urls

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        arms = self._arms(obj) if obj is not None else []
        if any(arm.assigned for arm in arms):
            context["funnel"] = {
                "labels": [str(label) for label in FUNNEL_STAGES.values()],
                "datasets": [
                    {
                        "label": str(_("control group")) if arm.is_control else arm.name,
                        "data": [getattr(arm, stage) for stage in FUNNEL_STAGES],
                    }
                    for arm in arms
                ],
            }
        if obj is not None:
            context["transition_buttons"] = [
                (name, TRANSITIONS[name].label) for name in campaign_actions_allowed(campaign=obj, user=request.user)
            ]
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    @staticmethod
    def _apply(request, campaign, action, note=""):
        try:
            campaign_transition(campaign=campaign, action=action, actor=request.user, note=note)
        except ApplicationError as error:
            messages.error(request, f"{campaign}: {error.message}")
            return False
        return True

    def transition_view(self, request, pk: int, action: str):
        return require_POST(self._transition_view)(request, pk, action)

    def _transition_view(self, request, pk: int, action: str):
        campaign = get_object_or_404(Campaign, pk=pk)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        if self._apply(request, campaign, action, note=request.POST.get("note", "")[:2000]):
            messages.success(
                request,
                _("%(campaign)s: %(action)s done.") % {"campaign": campaign, "action": TRANSITIONS[action].label},
            )
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def preview_view(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        number = (request.GET.get("member") or "").strip()
        member = None
        if number:
            member = Member.objects.filter(external_id=number).first()
            if member is None:
                messages.error(request, _("No member has the number %(number)s.") % {"number": number})
        member = member or campaign_audience_sample(campaign=campaign)
        previews = []
        if member is not None:
            context = message_context(member=member, campaign=campaign)
            for template in campaign.templates.order_by("channel", "language"):
                errors = template_errors(
                    channel=template.channel, subject=template.subject, body=template.body, contexts=[context]
                )
                rendered = (
                    None
                    if errors
                    else render(channel=template.channel, subject=template.subject, body=template.body, context=context)
                )
                previews.append(
                    {
                        "template": template,
                        "rendered": rendered,
                        "errors": errors,
                        "length": len(rendered.body) if rendered else None,
                    }
                )
        return TemplateResponse(
            request,
            "admin/campaigns/campaign/preview.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": campaign,
                "title": _("Preview: %(campaign)s") % {"campaign": campaign},
                "member": member,
                "masked_phone": mask_phone(member.phone) if member is not None else "",
                "number": number,
                "previews": previews,
            },
        )

    def _bulk(self, request, queryset, action):
        done = sum(self._apply(request, campaign, action) for campaign in queryset.order_by("pk")[:100])
        if done:
            messages.success(
                request,
                _("%(count)d campaigns: %(action)s done.") % {"count": done, "action": TRANSITIONS[action].label},
            )

    @admin.action(permissions=["approve"], description=_("Approve selected campaigns"))
    def approve_selected(self, request, queryset):
        self._bulk(request, queryset, "approve")

    @admin.action(permissions=["pause"], description=_("Pause selected campaigns"))
    def pause_selected(self, request, queryset):
        self._bulk(request, queryset, "pause")

    @admin.action(permissions=["approve"], description=_("Resume selected campaigns"))
    def resume_selected(self, request, queryset):
        self._bulk(request, queryset, "resume")

    @admin.action(permissions=["approve"], description=_("Cancel selected campaigns"))
    def cancel_selected(self, request, queryset):
        self._bulk(request, queryset, "cancel")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = (
        "id",
        "campaign",
        "step",
        "member",
        "channel",
        "sent_via",
        "status",
        "skip_reason",
        "attempts",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "skip_reason", "channel", "sent_via", "category", "deferred")
    list_select_related = ("campaign", "member")
    search_fields = ("=member__external_id", "=campaign__id")
    search_help_text = _("Member number or campaign id.")
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    readonly_fields = [f.name for f in Delivery._meta.fields]


@admin.register(InAppMessage)
class InAppMessageAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("id", "member", "subject", "created_at", "read_at")
    list_select_related = ("member",)
    search_fields = ("=member__external_id",)
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)


@admin.register(OutboxSettings)
class OutboxSettingsAdmin(BaseModelAdmin):
    fieldsets = (
        (_("Frequency caps (promotional messages, all channels)"), {"fields": ("daily_cap", "weekly_cap")}),
        (_("Quiet hours (Asia/Shanghai)"), {"fields": ("quiet_start", "quiet_end")}),
        (_("Retries"), {"fields": ("max_attempts", "retry_base_seconds", "batch_size")}),
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:campaigns_outboxsettings_change", args=[OutboxSettings.load().pk]))


class ChannelConfigForm(forms.ModelForm):
    secret = forms.CharField(
        label=_("signing secret"),
        required=False,
        widget=forms.PasswordInput(render_value=True),
        help_text=ChannelConfig._meta.get_field("secret").help_text,
    )

    class Meta:
        model = ChannelConfig
        fields = ("channel", "enabled", "url", "secret", "timeout_seconds", "from_email", "fallback_channel")


@admin.register(ChannelConfig)
class ChannelConfigAdmin(BaseModelAdmin):
    form = ChannelConfigForm
    list_display = ("channel", "enabled", "url", "timeout_seconds", "fallback_channel", "fallback_active")
    readonly_fields = ("fallback_active", "fallback_reason", "fallback_since")
    actions = ("fallback_on", "fallback_off")

    @admin.action(permissions=["change"], description=_("Send through the fallback channel"))
    def fallback_on(self, request, queryset):
        for config in queryset.order_by("channel"):
            used = channel_fallback_activate(channel=config.channel, reason=str(_("Switched on by staff")))
            if used is None:
                messages.warning(request, _("%(channel)s has no fallback channel.") % {"channel": config})
            else:
                messages.success(request, _("%(channel)s now goes out through its fallback.") % {"channel": config})

    @admin.action(permissions=["change"], description=_("Send through the channel itself again"))
    def fallback_off(self, request, queryset):
        for config in queryset.order_by("channel"):
            channel_fallback_clear(channel=config.channel)


# Recall and referrals have their own module; importing it registers them.
from campaigns import admin_recall  # noqa: E402,F401
