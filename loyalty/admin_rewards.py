"""Rewards, coupons, badges and titles in the admin.

Coupons are issued and badges awarded or revoked by hand through loyalty.services, with the same
token-based idempotency as the points forms in loyalty.admin.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from loyalty.admin import MAX_ROWS_PER_ACTION, IdempotentForm, _render_points_form, _too_many
from loyalty.models import Badge, Coupon, CouponBatch, MemberBadge, Reward, RewardRedemption
from loyalty.services import badge_award, badge_revoke, coupons_issue_by_member_numbers
from members.models import Member


@admin.register(Reward)
class RewardAdmin(BaseModelAdmin):
    list_display = (
        "name",
        "points_price",
        "stock",
        "per_member_limit",
        "min_tier",
        "valid_from",
        "valid_until",
        "is_active",
    )
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
        return format_html(
            '<a class="button" href="{}">{}</a> <a href="{}">{}</a>',
            url,
            _("Issue to members"),
            coupons,
            _("Coupons of this batch"),
        )

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
                    batch=batch,
                    member_numbers=form.cleaned_data["member_numbers"],
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
            reverse("admin:loyalty_badge_award", args=[badge.pk]),
            _("Award to members"),
            holders,
            _("Holders"),
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
                    badge_award(
                        member=members[number], badge=badge, actor=request.user, reason=form.cleaned_data["reason"]
                    )
                    done += 1
            self.message_user(
                request,
                ngettext("%(count)d member awarded.", "%(count)d members awarded.", done) % {"count": done},
                messages.SUCCESS,
            )
            unknown = sorted(set(numbers) - set(members))
            if unknown:
                self.message_user(
                    request,
                    _("No member has these numbers: %(numbers)s") % {"numbers": ", ".join(unknown[:50])},
                    messages.WARNING,
                )
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
                self,
                request,
                title=_("Revoke badges and titles"),
                form=form,
                action="revoke",
                targets=[str(item) for item in held],
                selected=[item.pk for item in held],
            )
        for item in held:
            badge_revoke(member_badge=item, actor=request.user, reason=form.cleaned_data["reason"])
        self.message_user(
            request,
            ngettext("%(count)d revoked.", "%(count)d revoked.", len(held)) % {"count": len(held)},
            messages.SUCCESS,
        )
        return None
