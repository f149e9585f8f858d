"""The moderation queue, the sensitive-word list and co-creation polls in the admin.

Every decision goes through campaigns.ugc.services, which records who made it and when.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from campaigns.ugc import services
from campaigns.ugc.models import (
    ModerationDecision,
    Poll,
    PollOption,
    PollVote,
    SensitiveWord,
    Submission,
    SubmissionImage,
)
from campaigns.ugc.selectors import poll_results
from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from members.selectors import member_ids_by_external_id

# One bulk decision locks and updates at most this many submissions; beyond it, filter further.
MAX_BULK_DECISION = 5_000


def _too_many(modeladmin, request, queryset) -> bool:
    if queryset.order_by()[: MAX_BULK_DECISION + 1].count() > MAX_BULK_DECISION:
        modeladmin.message_user(
            request,
            _("Choose at most %(max)d submissions at a time (filter the list further).") % {"max": MAX_BULK_DECISION},
            messages.ERROR,
        )
        return True
    return False


class SubmissionImageInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SubmissionImage
    fields = ["preview", "content_type", "size"]
    readonly_fields = fields
    extra = 0

    @admin.display(description=_("photo"))
    def preview(self, image: SubmissionImage):
        return format_html(
            '<a href="{0}" target="_blank" rel="noopener noreferrer"><img src="{0}" alt="" '
            'style="max-height:160px;max-width:240px"></a>',
            image.address,
        )


class ModerationDecisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ModerationDecision
    fields = ["at", "action", "reason", "actor"]
    readonly_fields = fields
    extra = 0
    ordering = ["-id"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason for the rejection"),
        max_length=services.submissions.MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Recorded with the decision and shown to the member's app as the reason."),
    )


@admin.register(Submission)
class SubmissionAdmin(BaseModelAdmin):
    """The moderation queue: filter by status (and flagged), then approve, reject or feature."""

    list_display = ["id", "created_at", "member_number", "kind", "excerpt", "flag", "status", "featured", "decided_by"]
    list_display_links = ["id", "excerpt"]
    list_filter = ["status", "flagged", "featured", "kind"]
    list_select_related = ["member", "decided_by"]
    # Exact lookups only (see get_search_results): a LIKE over a million texts is a full scan.
    search_fields = ["=external_id"]
    search_help_text = _("Submission number, member number or the sender's id.")
    ordering = ["-id"]
    raw_id_fields = ["member"]
    inlines = [SubmissionImageInline, ModerationDecisionInline]
    actions = ["approve", "reject", "feature", "unfeature"]
    fields = [
        "member", "kind", "title", "text", "rating", "flagged", "flagged_words", "status", "reject_reason",
        "featured", "featured_at", "decided_at", "decided_by", "source", "external_id", "created_at",
    ]  # fmt: skip
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        """A submission number, a member number or the sender's id, each looked up by its own
        index (Django's OR across a join to members would scan every submission)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(external_id=term)
        member_id = member_ids_by_external_id([term]).get(term)
        if member_id is not None:
            match |= Q(member_id=member_id)
        if term.isascii() and term.isdigit() and len(term) < 19:
            match |= Q(pk=int(term))
        return queryset.filter(match), False

    def has_add_permission(self, request) -> bool:
        return False  # members submit through the API

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # decisions are actions, recorded by the services

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm("ugc.moderate_submission")

    @admin.display(description=_("member"), ordering="member")
    def member_number(self, submission: Submission) -> str:
        return submission.member.external_id or f"#{submission.member_id}"

    @admin.display(description=_("content"))
    def excerpt(self, submission: Submission) -> str:
        return Truncator(submission.title or submission.text or "—").chars(60)

    @admin.display(description=_("sensitive words"))
    def flag(self, submission: Submission):
        if not submission.flagged:
            return ""
        return format_html('<strong class="errornote-inline">⚑ {}</strong>', "、".join(submission.flagged_words))

    @admin.action(permissions=["moderate"], description=_("Approve (points are paid by the earn rules)"))
    def approve(self, request, queryset):
        if _too_many(self, request, queryset):
            return
        count = services.submissions_approve(submission_ids=queryset.values_list("pk", flat=True), actor=request.user)
        self.message_user(
            request, ngettext("%(n)d submission approved.", "%(n)d submissions approved.", count) % {"n": count}
        )

    @admin.action(permissions=["moderate"], description=_("Reject with a reason…"))
    def reject(self, request, queryset):
        if _too_many(self, request, queryset):
            return None
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                count = services.submissions_reject(
                    submission_ids=queryset.values_list("pk", flat=True),
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                form.add_error("reason", exc.message_dict.get("reason", exc.messages))
            else:
                self.message_user(
                    request, ngettext("%(n)d submission rejected.", "%(n)d submissions rejected.", count) % {"n": count}
                )
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reject member submissions"),
            "opts": self.model._meta,
            "form": form,
            "queryset": queryset[:20],
            "count": queryset.order_by().count(),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "ugc/admin/reject.html", context)

    @admin.action(permissions=["moderate"], description=_("Feature (approved only)"))
    def feature(self, request, queryset):
        if _too_many(self, request, queryset):
            return
        count = services.submissions_feature(submission_ids=queryset.values_list("pk", flat=True), actor=request.user)
        self.message_user(
            request, ngettext("%(n)d submission featured.", "%(n)d submissions featured.", count) % {"n": count}
        )

    @admin.action(permissions=["moderate"], description=_("Stop featuring"))
    def unfeature(self, request, queryset):
        if _too_many(self, request, queryset):
            return
        count = services.submissions_feature(
            submission_ids=queryset.values_list("pk", flat=True), actor=request.user, featured=False
        )
        self.message_user(
            request,
            ngettext("%(n)d submission no longer featured.", "%(n)d submissions no longer featured.", count)
            % {"n": count},
        )


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ["at", "submission", "action", "reason", "actor"]
    list_filter = ["action"]
    list_select_related = ["submission", "actor"]
    search_fields = ["=submission__id"]
    ordering = ["-id"]


@admin.register(SensitiveWord)
class SensitiveWordAdmin(BaseModelAdmin):
    list_display = ["word", "is_active", "note", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["word"]
    actions = ["rescan"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._suggest_rescan(request)

    def _suggest_rescan(self, request) -> None:
        self.message_user(
            request,
            _("New words flag new submissions at once; use “Check waiting submissions again” for the queue."),
            messages.INFO,
        )

    def has_rescan_permission(self, request) -> bool:
        return request.user.has_perm("ugc.change_sensitiveword")

    @admin.action(permissions=["rescan"], description=_("Check waiting submissions again"))
    def rescan(self, request, queryset):
        from campaigns.ugc.tasks import rescan_submissions

        transaction.on_commit(rescan_submissions.delay)
        self.message_user(request, _("The waiting submissions are being checked again in the background."))


class PollOptionInline(admin.TabularInline):
    model = PollOption
    fields = ["position", "label", "description", "proposer", "submission"]
    raw_id_fields = ["proposer", "submission"]
    extra = 2

    def has_add_permission(self, request, obj=None) -> bool:
        return super().has_add_permission(request, obj) and (obj is None or obj.status == "draft")

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == "draft")


@admin.register(Poll)
class PollAdmin(BaseModelAdmin):
    list_display = ["title", "status", "closes_at", "winner", "closed_at", "closed_by"]
    list_filter = ["status"]
    list_select_related = ["winner", "closed_by"]
    search_fields = ["title"]
    ordering = ["-id"]
    inlines = [PollOptionInline]
    actions = ["open_polls", "close_polls"]
    readonly_fields = ["status", "results", "winner", "closed_at", "closed_by"]
    fields = [
        "title", "description", "closes_at", "reward_points", "reward_coupon_batch",
        "status", "results", "winner", "closed_at", "closed_by",
    ]  # fmt: skip
    raw_id_fields = ["reward_coupon_batch"]

    def has_close_permission(self, request) -> bool:
        return request.user.has_perm("ugc.close_poll")

    def has_change_permission(self, request, obj=None) -> bool:
        # A closed poll is history: its winner has been rewarded.
        return super().has_change_permission(request, obj) and (obj is None or obj.status != "closed")

    @admin.display(description=_("results"))
    def results(self, poll: Poll):
        if poll.pk is None:
            return "—"
        results = poll_results(poll=poll)
        rows = format_html_join("", "<li>{}: {}</li>", ((row.label, row.votes) for row in results.options))
        return format_html(
            '<ul>{}</ul><p>{} <a href="{}">{}</a></p>',
            rows,
            _("%(n)d votes in all.") % {"n": results.total},
            reverse("ugc:featured"),
            _("Results chart"),
        )

    @admin.action(permissions=["change"], description=_("Open for votes"))
    def open_polls(self, request, queryset):
        for poll in queryset.order_by("pk"):
            try:
                services.poll_open(poll=poll)
            except ApplicationError as exc:
                self.message_user(request, f"{poll}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("“%(poll)s” is open for votes.") % {"poll": poll})

    @admin.action(permissions=["close"], description=_("Close and reward the winning proposer"))
    def close_polls(self, request, queryset):
        for poll in queryset.order_by("pk"):
            try:
                result = services.poll_close(poll=poll, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"{poll}: {exc.message}", messages.ERROR)
                continue
            winner = result.poll.winner
            if winner is None:
                self.message_user(request, _("“%(poll)s” is closed without votes.") % {"poll": poll}, messages.WARNING)
            else:
                self.message_user(
                    request, _("“%(poll)s” is closed; “%(option)s” won.") % {"poll": poll, "option": winner.label}
                )


@admin.register(PollVote)
class PollVoteAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ["voted_at", "poll", "option", "member", "source"]
    list_filter = ["poll"]
    list_select_related = ["poll", "option", "member"]
    raw_id_fields = ["member"]
    search_fields = ["=member__external_id"]
    ordering = ["-id"]
