"""Recall playbooks, their settings, staff-set churn reasons and rewarded referrals in the admin."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from campaigns.models import MemberChurnReason, RecallPlaybook, RecallSettings, Referral
from campaigns.recall import member_churn_reason_set
from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin


@admin.register(RecallPlaybook)
class RecallPlaybookAdmin(BaseModelAdmin):
    list_display = ("reason", "campaign", "campaign_status", "cooldown_days")
    list_select_related = ("campaign",)
    raw_id_fields = ("campaign",)

    @admin.display(description=_("status"))
    def campaign_status(self, playbook: RecallPlaybook):
        return playbook.campaign.get_status_display()

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "subtitle": format_html('<a href="{}">{}</a>', reverse("campaigns:recall_report"), _("Recall results")),
        }
        return super().changelist_view(request, extra_context)


@admin.register(RecallSettings)
class RecallSettingsAdmin(BaseModelAdmin):
    fields = ("history_days", "lapsed_category_days", "came_back_days")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:campaigns_recallsettings_change", args=[RecallSettings.load().pk]))


@admin.register(MemberChurnReason)
class MemberChurnReasonAdmin(BaseModelAdmin):
    list_display = ("member", "reason", "set_by", "set_at")
    list_filter = ("reason",)
    list_select_related = ("member", "set_by")
    raw_id_fields = ("member",)
    search_fields = ("=member__external_id",)
    fields = ("member", "reason", "note")

    def save_model(self, request, obj, form, change):
        saved = member_churn_reason_set(member=obj.member, reason=obj.reason, actor=request.user, note=obj.note)
        obj.pk = saved.pk


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("id", "campaign", "inviter", "invitee", "rewarded_at")
    list_select_related = ("campaign", "inviter", "invitee")
    search_fields = ("=inviter__external_id", "=invitee__external_id")
    show_facets = admin.ShowFacets.NEVER
    ordering = ("-id",)
    exclude = ("invitee_phone", "device")  # never shown: personal data that only guards against farming
