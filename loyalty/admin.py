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
    Badge,
    Coupon,
    CouponBatch,
    EarnRule,
    LoyaltySettings,
    MemberBadge,
    MemberTier,
    PointsAccount,
    PointsAllocation,
    PointsEntry,
    PointsMultiplierWindow,
    Reward,
    RewardRedemption,
    Tier,
    TierChange,
    TierDowngradeNotice,
)
from loyalty.selectors import member_tier_history, points_open_lots, tier_progress
from loyalty.services import (
    badge_award,
    badge_revoke,
    coupons_issue_by_member_numbers,
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
    amount = forms.IntegerField(
        label=_("points"), help_text=_("Positive to give points, negative to take them away.")
    )
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
        return HttpResponseRedirect(
            reverse("admin:loyalty_loyaltysettings_change", args=[LoyaltySettings.load().pk])
        )


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
                (lot.remaining, date_format(timezone.localtime(lot.expires_at), "DATETIME_FORMAT")
                 if lot.expires_at else _("never"))
                for lot in lots
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("points"), _("expires at"), rows,
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
                self, request, title=_("Adjust points"), form=form, action="adjust_points",
                targets=[account.member for account in accounts], selected=[account.pk for account in accounts],
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
        "member", "kind", "amount", "remaining", "expires_at", "reason", "source_event", "reverses", "reversed_by",
        "actor", "idempotency_key", "created_at",
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
                self, request, title=_("Reverse entries"), form=form, action="reverse_entries",
                targets=[f"{entry.member}: {entry}" for entry in entries], selected=[entry.pk for entry in entries],
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
        "name", "code", "rank", "rule", "min_spend", "min_points", "qualifying_period_days",
        "discount_percent", "points_multiplier", "validity_days",
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
                (date_format(timezone.localtime(change.created_at), "DATETIME_FORMAT"), change.from_tier or "-",
                 change.to_tier, change.reason, change.actor or "-")
                for change in changes
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            _("changed at"), _("from"), _("to"), _("reason"), _("by"), rows,
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


@admin.register(Reward)
class RewardAdmin(BaseModelAdmin):
    list_display = ("name", "points_price", "stock", "per_member_limit", "min_tier", "valid_from", "valid_until",
                    "is_active")
    list_select_related = ("min_tier",)
    list_filter = ("is_active", "min_tier")
    search_fields = ("name",)
    ordering = ("points_price", "id")
    fieldsets = (
        (None, {"fields": ("name", "description", "points_price", "is_active")}),
        (_("Limits"), {"fields": ("stock", "per_member_limit", "min_tier", "valid_from", "valid_until")}),
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RewardRedemption)
class RewardRedemptionAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("created_at", "member", "reward", "points_entry")
    list_select_related = ("member", "reward", "points_entry")
    list_filter = ("reward",)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=member__external_id",)
    search_help_text = _("Member number.")
    ordering = ("-id",)
    sortable_by = ()


ISSUE_COUPONS_PERMISSION = "loyalty.add_coupon"
MAX_MEMBER_NUMBERS = 10_000


class CouponIssueForm(IdempotentForm):
    member_numbers = forms.CharField(
        label=_("member numbers"),
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text=_("One member number per line (or separated by commas or spaces). Each member gets one coupon."),
    )

    def clean_member_numbers(self) -> list[str]:
        numbers = [n for n in self.cleaned_data["member_numbers"].replace(",", " ").split() if n]
        if len(numbers) > MAX_MEMBER_NUMBERS:
            raise ValidationError(_("At most %(max)d member numbers at a time.") % {"max": MAX_MEMBER_NUMBERS})
        return numbers


@admin.register(CouponBatch)
class CouponBatchAdmin(BaseModelAdmin):
    """Coupon definitions; "Issue to members" on a batch's page gives its coupons out by member number."""

    list_display = ("name", "kind", "value", "min_spend", "valid_from", "valid_until")
    list_filter = ("kind",)
    search_fields = ("name",)
    ordering = ("-id",)
    readonly_fields = ("issue_link",)
    fields = ("name", "kind", "value", "min_spend", "valid_from", "valid_until", "issue_link")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("issue"))
    def issue_link(self, batch: CouponBatch):
        if not batch.pk:
            return "-"
        url = reverse("admin:loyalty_couponbatch_issue", args=[batch.pk])
        coupons = reverse("admin:loyalty_coupon_changelist") + f"?batch__id__exact={batch.pk}"
        return format_html('<a class="button" href="{}">{}</a> <a href="{}">{}</a>', url,
                           _("Issue to members"), coupons, _("Coupons of this batch"))

    def get_urls(self):
        return [
            path("<int:pk>/issue/", self.admin_site.admin_view(self.issue_view), name="loyalty_couponbatch_issue"),
            *super().get_urls(),
        ]

    def issue_view(self, request, pk: int):
        if not request.user.has_perm(ISSUE_COUPONS_PERMISSION):
            raise PermissionDenied
        batch = self.get_object(request, str(pk))
        if batch is None:
            raise PermissionDenied
        form = CouponIssueForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                issued, unknown = coupons_issue_by_member_numbers(
                    batch=batch, member_numbers=form.cleaned_data["member_numbers"],
                    issue_key=f"admin:{form.cleaned_data['token']}",
                )
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(
                    request,
                    ngettext("%(count)d coupon issued.", "%(count)d coupons issued.", issued) % {"count": issued},
                    messages.SUCCESS,
                )
                if unknown:
                    self.message_user(
                        request,
                        _("No member has these numbers: %(numbers)s") % {"numbers": ", ".join(unknown[:50])},
                        messages.WARNING,
                    )
                return HttpResponseRedirect(reverse("admin:loyalty_couponbatch_change", args=[batch.pk]))
        return _render_points_form(self, request, title=_("Issue %(batch)s") % {"batch": batch}, form=form)


@admin.register(Coupon)
class CouponAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("code", "member", "batch", "status", "issued_at", "expires_at", "used_at", "order_ref")
    list_select_related = ("member", "batch")
    list_filter = ("status", "batch")
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=code", "=member__external_id")
    search_help_text = _("Coupon code or member number.")
    ordering = ("-id",)
    sortable_by = ()


AWARD_BADGES_PERMISSION = "loyalty.award_badges"


class BadgeAwardForm(CouponIssueForm):
    reason = forms.CharField(label=_("reason"), max_length=255, help_text=_("Kept with the award."))


@admin.register(Badge)
class BadgeAdmin(BaseModelAdmin):
    """Badges and titles; "Award to members" on a badge's page gives it by hand, by member number."""

    list_display = ("name", "kind", "rule", "threshold", "period_days", "validity_days", "is_public", "is_active")
    list_filter = ("kind", "rule", "is_active")
    search_fields = ("name", "code")
    ordering = ("kind", "name")
    readonly_fields = ("award_link",)
    fieldsets = (
        (None, {"fields": ("name", "code", "kind", "description", "privileges", "is_public", "is_active")}),
        (_("Rule"), {"fields": ("rule", "threshold", "period_days", "validity_days")}),
        (None, {"fields": ("award_link",)}),
    )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("award"))
    def award_link(self, badge: Badge):
        if not badge.pk:
            return "-"
        holders = reverse("admin:loyalty_memberbadge_changelist") + f"?badge__id__exact={badge.pk}"
        return format_html(
            '<a class="button" href="{}">{}</a> <a href="{}">{}</a>',
            reverse("admin:loyalty_badge_award", args=[badge.pk]), _("Award to members"), holders, _("Holders"),
        )

    def get_urls(self):
        return [
            path("<int:pk>/award/", self.admin_site.admin_view(self.award_view), name="loyalty_badge_award"),
            *super().get_urls(),
        ]

    def award_view(self, request, pk: int):
        if not request.user.has_perm(AWARD_BADGES_PERMISSION):
            raise PermissionDenied
        badge = self.get_object(request, str(pk))
        if badge is None:
            raise PermissionDenied
        form = BadgeAwardForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            numbers = form.cleaned_data["member_numbers"]
            members = {m.external_id: m for m in Member.objects.filter(external_id__in=numbers)}
            done = 0
            for number in numbers:
                if number in members:
                    badge_award(member=members[number], badge=badge, actor=request.user,
                                reason=form.cleaned_data["reason"])
                    done += 1
            self.message_user(request, ngettext("%(count)d member awarded.", "%(count)d members awarded.", done)
                              % {"count": done}, messages.SUCCESS)
            unknown = sorted(set(numbers) - set(members))
            if unknown:
                self.message_user(request, _("No member has these numbers: %(numbers)s")
                                  % {"numbers": ", ".join(unknown[:50])}, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:loyalty_badge_change", args=[badge.pk]))
        return _render_points_form(self, request, title=_("Award %(badge)s") % {"badge": badge}, form=form)


class RevokeForm(IdempotentForm):
    reason = forms.CharField(label=_("reason"), max_length=255)


@admin.register(MemberBadge)
class MemberBadgeAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("member", "badge", "awarded_at", "expires_at", "revoked_at", "awarded_by", "reason")
    list_select_related = ("member", "badge", "awarded_by")
    list_filter = ("badge",)
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("=member__external_id",)
    search_help_text = _("Member number.")
    ordering = ("-id",)
    sortable_by = ()
    actions = ("revoke",)

    def has_award_permission(self, request) -> bool:
        return request.user.has_perm(AWARD_BADGES_PERMISSION)

    @admin.action(permissions=["award"], description=_("Revoke the selected badges and titles"))
    def revoke(self, request, queryset):
        held = list(queryset.select_related("member", "badge")[: MAX_ROWS_PER_ACTION + 1])
        if _too_many(self, request, held):
            return None
        form = RevokeForm(request.POST if "apply" in request.POST else None)
        if not (form.is_bound and form.is_valid()):
            return _render_points_form(
                self, request, title=_("Revoke badges and titles"), form=form, action="revoke",
                targets=[str(item) for item in held], selected=[item.pk for item in held],
            )
        for item in held:
            badge_revoke(member_badge=item, actor=request.user, reason=form.cleaned_data["reason"])
        self.message_user(request, ngettext("%(count)d revoked.", "%(count)d revoked.", len(held))
                          % {"count": len(held)}, messages.SUCCESS)
        return None


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


# Runs of the periodic jobs.
from loyalty import admin_jobs  # noqa: E402,F401
