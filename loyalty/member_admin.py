"""Loyalty on the member admin (members/admin.py): the member page's loyalty panel, and bulk
actions that grant points or issue a coupon to the selected members or the whole filtered list.

The actions run in the background: confirming records the grant with the member list as it
stands (loyalty.services.grants) and a Celery task carries it out through the same set-based
services as everywhere else, its progress shown on the loyalty job run. They are idempotent: the
confirmation page carries a token made when it was rendered, so submitting it twice (a double
click, a browser retry) records one grant, and the task gives each member at most once.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm.core.exceptions import ApplicationError
from loyalty.models import CouponBatch, LoyaltyJobRun
from loyalty.selectors import member_loyalty
from loyalty.services.grants import member_list_grant_points, member_list_issue_coupons
from members.models import Member

ADJUST_PERMISSION = "loyalty.adjust_points"
ISSUE_COUPONS_PERMISSION = "loyalty.add_coupon"
# The most points one bulk grant may give each member: a typo (an extra zero or three) in a grant
# to a whole filtered list is expensive; bigger one-off gifts go through single adjustments.
MAX_BULK_POINTS = 100_000


def member_loyalty_context(request, member: Member) -> dict | None:
    """The member page's loyalty panel: figures from loyalty.selectors plus links staff may follow.

    None for staff who may not see members' points.
    """
    user = request.user
    if not user.has_perm("loyalty.view_pointsaccount"):
        return None
    member_filter = f"?member__id__exact={member.pk}"
    loyalty = member_loyalty(member=member)
    return {
        "loyalty": loyalty,
        "ledger_url": reverse("admin:loyalty_pointsentry_changelist") + member_filter,
        "account_url": (
            reverse("admin:loyalty_pointsaccount_change", args=[loyalty.account.pk]) if loyalty.account else ""
        ),
        "tier_history_url": reverse("admin:loyalty_tierchange_changelist") + member_filter,
        "badges_url": reverse("admin:loyalty_memberbadge_changelist") + member_filter,
        "coupons_url": reverse("admin:loyalty_coupon_changelist") + member_filter,
        "adjust_url": (
            reverse("admin:loyalty_pointsentry_adjust") + f"?member={member.pk}"
            if user.has_perm(ADJUST_PERMISSION)
            else ""
        ),
        "can_view_ledger": user.has_perm("loyalty.view_pointsentry"),
    }


class _TokenForm(forms.Form):
    token = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex)


class GrantPointsForm(_TokenForm):
    amount = forms.IntegerField(
        label=_("points per member"),
        min_value=1,
        max_value=MAX_BULK_POINTS,
        help_text=_("Each selected member gets this many points, as a new lot that expires by the usual policy."),
    )
    reason = forms.CharField(
        label=_("reason"),
        max_length=255,
        help_text=_("Kept in the ledger with your name, for the members' history and for auditors."),
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError(_("A reason is required."))
        return reason


class IssueCouponForm(_TokenForm):
    batch = forms.ModelChoiceField(
        label=_("coupon batch"),
        queryset=CouponBatch.objects.none(),
        help_text=_("Each selected member gets one coupon of this batch. Only batches still valid are listed."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["batch"].queryset = CouponBatch.objects.filter(valid_until__gt=timezone.now()).order_by("-id")


class MemberLoyaltyActionsMixin:
    """Bulk loyalty actions for MemberAdmin; listed in its `actions`."""

    def has_grant_points_permission(self, request) -> bool:
        return request.user.has_perm(ADJUST_PERMISSION)

    def has_issue_coupons_permission(self, request) -> bool:
        return request.user.has_perm(ISSUE_COUPONS_PERMISSION)

    @admin.action(permissions=["grant_points"], description=_("Give points to the selected members"))
    def grant_points(self, request, queryset: QuerySet[Member]):
        form = GrantPointsForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                # An adjustment, as every movement of points by staff is.
                run = member_list_grant_points(
                    members=queryset,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    token=form.cleaned_data["token"],
                    actor=request.user,
                )
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self._queued_message(
                    request,
                    run,
                    ngettext(
                        "%(points)s points are being given to %(count)s member.",
                        "%(points)s points are being given to each of %(count)s members.",
                        run.member_count,
                    )
                    % {"points": intcomma(form.cleaned_data["amount"]), "count": intcomma(run.member_count)},
                )
            return self._redirect_after_action(request)
        return self._loyalty_action_page(
            request,
            queryset,
            form=form,
            action="grant_points",
            title=_("Give points"),
            intro=_(
                "Every selected member gets the points, recorded with your name and the reason. A large list is "
                "given in the background; the message after confirming links to its progress."
            ),
        )

    @admin.action(permissions=["issue_coupons"], description=_("Issue a coupon to the selected members"))
    def issue_coupons(self, request, queryset: QuerySet[Member]):
        form = IssueCouponForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            batch = form.cleaned_data["batch"]
            run = member_list_issue_coupons(
                members=queryset, batch=batch, token=form.cleaned_data["token"], actor=request.user
            )
            self._queued_message(
                request,
                run,
                ngettext(
                    "%(count)s coupon of %(batch)s is being issued.",
                    "%(count)s coupons of %(batch)s are being issued.",
                    run.member_count,
                )
                % {"count": intcomma(run.member_count), "batch": batch},
            )
            return self._redirect_after_action(request)
        return self._loyalty_action_page(
            request,
            queryset,
            form=form,
            action="issue_coupons",
            title=_("Issue a coupon"),
            intro=_("Each selected member gets one coupon of the batch you pick."),
        )

    def _queued_message(self, request, run: LoyaltyJobRun, text: str) -> None:
        url = reverse("admin:loyalty_loyaltyjobrun_change", args=[run.pk])
        self.message_user(
            request,
            format_html('{} <a href="{}">{}</a>', text, url, _("Follow its progress.")),
            messages.SUCCESS,
        )

    def _loyalty_action_page(self, request, queryset, *, form, action: str, title, intro):
        """The confirmation page: how many members, the form, and the selection posted back."""
        from members.admin import _safe_next_url

        select_across = request.POST.get("select_across") == "1"
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "opts": self.opts,
            "form": form,
            "action": action,
            "select_across": select_across,
            "selected": selected,
            # Exact even for the whole filtered list: points and coupons cost money, so staff
            # confirm a number, not an estimate.
            "member_count": queryset.count() if select_across else len(selected),
            "exact_count": True,
            "next_url": _safe_next_url(request),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/loyalty_action.html", context)
