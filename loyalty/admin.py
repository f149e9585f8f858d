"""Loyalty in the admin.

The ledger and the accounts are read-only: points move only through loyalty.services. Staff
with the `loyalty.adjust_points` permission (supervisors) adjust and reverse points here, through
the same services, with a reason that the ledger keeps. The settings row is edited in place.
Tiers are edited here; members' tiers and their history are read-only.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from loyalty.models import (
    EarnRule,
    LoyaltySettings,
    MemberTier,
    PointsAccount,
    PointsAllocation,
    PointsEntry,
    PointsMultiplierWindow,
    Tier,
    TierChange,
    TierDowngradeNotice,
)
from loyalty.selectors import member_tier_history, points_open_lots, tier_progress
from loyalty.services import (
    points_adjust,
    points_reverse,
)
from members.models import Member

ADJUST_PERMISSION = "loyalty.adjust_points"
# Each selected row is one service call in its own transaction, inside the web request.
MAX_ROWS_PER_ACTION = 500
OPEN_LOTS_SHOWN = 50
HISTORY_SHOWN = 50


class IdempotentForm(forms.Form):
    """Carries a token made when the page is rendered: submitting the same page twice (a double
    click, a browser retry) replays the first submission instead of moving points again."""

    token = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex)

    def idempotency_key(self, operation: str, pk: int) -> str:
        return f"admin-{operation}:{self.cleaned_data['token']}:{pk}"


class AdjustmentForm(IdempotentForm):
    amount = forms.IntegerField(label=_("points"), help_text=_("Positive to give points, negative to take them away."))
    reason = forms.CharField(
        label=_("reason"),
        max_length=255,
        help_text=_("Kept in the ledger with your name, for the member's history and for auditors."),
    )

    def clean_amount(self) -> int:
        if self.cleaned_data["amount"] == 0:
            raise ValidationError(_("Enter a number of points other than zero."))
        return self.cleaned_data["amount"]


class MemberAdjustmentForm(AdjustmentForm):
    member = forms.ModelChoiceField(queryset=Member.objects.all(), label=_("member"))

    field_order = ["member", "amount", "reason"]

    def __init__(self, *args, admin_site, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["member"].widget = ForeignKeyRawIdWidget(
            PointsEntry._meta.get_field("member").remote_field, admin_site
        )


class ReversalForm(IdempotentForm):
    reason = forms.CharField(
        label=_("reason"), max_length=255, help_text=_("For example the refund or cancelled order it corrects.")
    )


def _render_points_form(modeladmin, request, *, title, form, targets=(), action=None, selected=()):
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.opts,
        "title": title,
        "form": form,
        "targets": targets,
        "action": action,
        "selected": selected,
        "media": modeladmin.media + form.media,
    }
    return TemplateResponse(request, "admin/loyalty/points_form.html", context)


def _report(modeladmin, request, *, done: int, failures: list[str]) -> None:
    if done:
        modeladmin.message_user(
            request,
            ngettext("%(count)d movement of points recorded.", "%(count)d movements of points recorded.", done)
            % {"count": done},
            messages.SUCCESS,
        )
    for failure in failures:
        modeladmin.message_user(request, failure, messages.ERROR)


def _too_many(modeladmin, request, rows: list) -> bool:
    if len(rows) <= MAX_ROWS_PER_ACTION:
        return False
    modeladmin.message_user(
        request,
        _("Select at most %(max)d rows at a time.") % {"max": MAX_ROWS_PER_ACTION},
        messages.ERROR,
    )
    return True


@admin.register(LoyaltySettings)
class LoyaltySettingsAdmin(BaseModelAdmin):
    fieldsets = (
        (_("Redemption"), {"fields": ("points_per_yuan", "redemption_minimum")}),
        (_("Expiry"), {"fields": ("expiry_policy", "expiry_period")}),
        (_("Tiers"), {"fields": ("tier_grace_days",)}),
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # There is one row: the list would only be a link to it.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:loyalty_loyaltysettings_change", args=[LoyaltySettings.load().pk]))


@admin.register(PointsAccount)
class PointsAccountAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("member", "balance", "lifetime_earned", "lifetime_redeemed", "lifetime_expired", "updated_at")
    list_select_related = ("member",)
    search_fields = ("=member__external_id",)
    search_help_text = _("Member number.")
    show_facets = admin.ShowFacets.NEVER
    # (balance, id) is indexed; nothing else sorts a million accounts cheaply.
    ordering = ("-balance", "-id")
    sortable_by = ("balance",)
    fields = ("member", "balance", "lifetime_earned", "lifetime_redeemed", "lifetime_expired", "open_lots", "links")
    readonly_fields = fields
    actions = ("adjust_points",)

    def has_adjust_permission(self, request) -> bool:
        return request.user.has_perm(ADJUST_PERMISSION)

    @admin.display(description=_("points and when they expire"))
    def open_lots(self, account: PointsAccount):
        lots = list(points_open_lots(member=account.member)[:OPEN_LOTS_SHOWN])
        if not lots:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            (
                (
                    lot.remaining,
                    date_format(timezone.localtime(lot.expires_at), "DATETIME_FORMAT")
                    if lot.expires_at
                    else _("never"),
                )
                for lot in lots
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("points"),
            _("expires at"),
            rows,
        )

    @admin.display(description=_("see also"))
    def links(self, account: PointsAccount):
        ledger = reverse("admin:loyalty_pointsentry_changelist") + f"?member__id__exact={account.member_id}"
        return format_html('<a href="{}">{}</a>', ledger, _("All movements of this member's points"))

    @admin.action(permissions=["adjust"], description=_("Adjust the points of the selected members"))
    def adjust_points(self, request, queryset):
        accounts = list(queryset.select_related("member")[: MAX_ROWS_PER_ACTION + 1])
        if _too_many(self, request, accounts):
            return None
        form = AdjustmentForm(request.POST if "apply" in request.POST else None)
        if not (form.is_bound and form.is_valid()):
            return _render_points_form(
                self,
                request,
                title=_("Adjust points"),
                form=form,
                action="adjust_points",
                targets=[account.member for account in accounts],
                selected=[account.pk for account in accounts],
            )
        done, failures = 0, []
        for account in accounts:
            try:
                points_adjust(
                    member=account.member,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    idempotency_key=form.idempotency_key("adjust", account.member_id),
                    actor=request.user,
                )
                done += 1
            except ApplicationError as error:
                failures.append(f"{account.member}: {error.message}")
        _report(self, request, done=done, failures=failures)
        return None


class PointsAllocationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PointsAllocation
    fk_name = "entry"
    fields = ("lot", "lot_expires_at", "amount")
    readonly_fields = fields
    extra = 0
    verbose_name = _("lot used")
    verbose_name_plural = _("lots used (negative: points given back)")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("lot")

    @admin.display(description=_("expires at"))
    def lot_expires_at(self, allocation: PointsAllocation):
        return allocation.lot.expires_at


@admin.register(PointsEntry)
class PointsEntryAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    change_list_template = "admin/loyalty/pointsentry/change_list.html"
    list_display = ("id", "created_at", "member", "kind", "amount", "remaining", "expires_at", "reason", "actor")
    list_select_related = ("member", "actor")
    list_filter = ("kind",)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=idempotency_key", "=member__external_id")
    search_help_text = _("Member number or idempotency key.")
    ordering = ("-id",)
    sortable_by = ()
    fields = (
        "member",
        "kind",
        "amount",
        "remaining",
        "expires_at",
        "reason",
        "source_event",
        "reverses",
        "reversed_by",
        "actor",
        "idempotency_key",
        "created_at",
    )
    readonly_fields = fields
    inlines = (PointsAllocationInline,)
    actions = ("reverse_entries",)

    def has_adjust_permission(self, request) -> bool:
        return request.user.has_perm(ADJUST_PERMISSION)

    @admin.display(description=_("reversed by"))
    def reversed_by(self, entry: PointsEntry):
        reversal = getattr(entry, "reversal", None)
        if reversal is None:
            return "-"
        url = reverse("admin:loyalty_pointsentry_change", args=[reversal.pk])
        return format_html('<a href="{}">{}</a>', url, reversal)

    def get_urls(self):
        return [
            path("adjust/", self.admin_site.admin_view(self.adjust_view), name="loyalty_pointsentry_adjust"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_adjust": self.has_adjust_permission(request)}
        return super().changelist_view(request, extra_context)

    def adjust_view(self, request):
        """Adjust one member's points, including a member who has none yet."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        form = MemberAdjustmentForm(
            request.POST if request.method == "POST" else None,
            initial={"member": request.GET.get("member")},
            admin_site=self.admin_site,
        )
        if form.is_bound and form.is_valid():
            member = form.cleaned_data["member"]
            try:
                entry = points_adjust(
                    member=member,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    idempotency_key=form.idempotency_key("adjust", member.pk),
                    actor=request.user,
                )
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                _report(self, request, done=1, failures=[])
                return HttpResponseRedirect(reverse("admin:loyalty_pointsentry_change", args=[entry.pk]))
        return _render_points_form(self, request, title=_("Adjust a member's points"), form=form)

    @admin.action(permissions=["adjust"], description=_("Reverse the selected entries"))
    def reverse_entries(self, request, queryset):
        entries = list(queryset.select_related("member")[: MAX_ROWS_PER_ACTION + 1])
        if _too_many(self, request, entries):
            return None
        form = ReversalForm(request.POST if "apply" in request.POST else None)
        if not (form.is_bound and form.is_valid()):
            return _render_points_form(
                self,
                request,
                title=_("Reverse entries"),
                form=form,
                action="reverse_entries",
                targets=[f"{entry.member}: {entry}" for entry in entries],
                selected=[entry.pk for entry in entries],
            )
        done, failures = 0, []
        for entry in entries:
            try:
                points_reverse(
                    entry=entry,
                    reason=form.cleaned_data["reason"],
                    idempotency_key=form.idempotency_key("reverse", entry.pk),
                    actor=request.user,
                )
                done += 1
            except ApplicationError as error:
                failures.append(f"#{entry.pk} {entry}: {error.message}")
        _report(self, request, done=done, failures=failures)
        return None


@admin.register(Tier)
class TierAdmin(BaseModelAdmin):
    list_display = (
        "name",
        "code",
        "rank",
        "rule",
        "min_spend",
        "min_points",
        "qualifying_period_days",
        "discount_percent",
        "points_multiplier",
        "validity_days",
    )
    ordering = ("rank",)
    fieldsets = (
        (None, {"fields": ("name", "code", "rank")}),
        (_("Qualifying"), {"fields": ("rule", "min_spend", "min_points", "qualifying_period_days", "validity_days")}),
        (_("Benefits"), {"fields": ("discount_percent", "points_multiplier", "birthday_gift", "benefits")}),
    )


@admin.register(MemberTier)
class MemberTierAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("member", "tier", "since", "valid_until")
    list_select_related = ("member", "tier")
    list_filter = ("tier",)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=member__external_id",)
    search_help_text = _("Member number.")
    ordering = ("-id",)
    sortable_by = ()
    fields = ("member", "tier", "since", "valid_until", "progress", "history")
    readonly_fields = fields

    @admin.display(description=_("to the next tier"))
    def progress(self, status: MemberTier):
        return tier_progress(member=status.member).message

    @admin.display(description=_("history"))
    def history(self, status: MemberTier):
        changes = member_tier_history(member=status.member)[:HISTORY_SHOWN]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(timezone.localtime(change.created_at), "DATETIME_FORMAT"),
                    change.from_tier or "-",
                    change.to_tier,
                    change.reason,
                    change.actor or "-",
                )
                for change in changes
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            _("changed at"),
            _("from"),
            _("to"),
            _("reason"),
            _("by"),
            rows,
        )


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("created_at", "member", "from_tier", "to_tier", "reason", "actor")
    list_select_related = ("member", "from_tier", "to_tier", "actor")
    list_filter = ("to_tier",)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=member__external_id",)
    search_help_text = _("Member number.")
    ordering = ("-id",)
    sortable_by = ()


@admin.register(EarnRule)
class EarnRuleAdmin(BaseModelAdmin):
    """Rules apply to events recorded from the moment they are saved; past events keep their points."""

    list_display = ("name", "kind", "sub_kind", "points", "daily_cap", "streak_days", "streak_bonus", "is_active")
    list_filter = ("kind", "is_active")
    list_editable = ("is_active",)
    ordering = ("kind", "sub_kind")
    fieldsets = (
        (None, {"fields": ("name", "kind", "sub_kind", "points", "is_active")}),
        (_("Limits and bonuses"), {"fields": ("daily_cap", "streak_days", "streak_bonus")}),
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        # Entries name the rule that paid them: deactivate a rule instead of deleting it.
        return False


@admin.register(PointsMultiplierWindow)
class PointsMultiplierWindowAdmin(BaseModelAdmin):
    list_display = ("name", "starts_at", "ends_at", "factor", "is_active")
    list_filter = ("is_active",)
    list_editable = ("is_active",)
    ordering = ("-starts_at",)
    fields = ("name", "starts_at", "ends_at", "factor", "is_active")


@admin.register(TierDowngradeNotice)
class TierDowngradeNoticeAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("created_at", "member", "from_tier", "to_tier", "downgrade_on", "outcome", "message")
    list_select_related = ("member", "from_tier", "to_tier")
    list_filter = ("outcome",)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=member__external_id",)
    search_help_text = _("Member number.")
    ordering = ("-id",)
    sortable_by = ()


# Rewards, coupons, badges and titles; runs of the periodic jobs.
from loyalty import admin_jobs, admin_rewards  # noqa: E402,F401
