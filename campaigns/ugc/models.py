"""Member content (UGC) with its moderation, the sensitive-word list, and co-creation polls."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel

# Member content ------------------------------------------------------------------------------


class SubmissionKind(models.TextChoices):
    TEXT = "text", _("Text")
    IMAGE = "image", _("Photos")
    REVIEW = "review", _("Review")
    PROPOSAL = "proposal", _("Proposal")


class SubmissionStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for moderation")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class Submission(BaseModel):
    """A piece of content a member sent in (text, photos, a review, a proposal).

    It waits in the moderation queue until staff approve or reject it. The sensitive-word list
    is checked when it arrives: `flagged_words` holds what matched, so moderators see it first.
    Approval records one `ugc` behaviour event (sub-kind `approved`), which the earn rules pay
    for; the event is unique per submission, so a submission earns at most once.
    """

    member = models.ForeignKey(
        "members.Member",
        on_delete=models.CASCADE,
        related_name="ugc_submissions",
        verbose_name=_("member"),
        db_index=False,  # ugc_submission_member_idx (member, -id) serves every lookup by member
    )
    kind = models.CharField(_("kind"), max_length=16, choices=SubmissionKind)
    title = models.CharField(_("title"), max_length=200, blank=True)
    text = models.TextField(_("text"), blank=True)
    rating = models.PositiveSmallIntegerField(
        _("rating"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text=_("Reviews only: 1 to 5 stars."),
    )
    source = models.CharField(
        _("source"), max_length=64, help_text=_("Where it came from: the partner's name, or staff.")
    )
    external_id = models.CharField(
        _("external id"),
        max_length=64,
        blank=True,
        help_text=_("The sending system's own id for it; a second submission with the same id is the same one."),
    )
    status = models.CharField(_("status"), max_length=16, choices=SubmissionStatus, default=SubmissionStatus.PENDING)
    flagged = models.BooleanField(
        _("flagged"), default=False, help_text=_("It contains words of the sensitive-word list.")
    )
    flagged_words = models.JSONField(_("sensitive words found"), default=list, blank=True)
    featured = models.BooleanField(_("featured"), default=False)
    featured_at = models.DateTimeField(_("featured at"), null=True, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    reject_reason = models.CharField(_("reason for rejection"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("member submission")
        verbose_name_plural = _("member submissions")
        permissions = [("moderate_submission", _("Can approve, reject and feature member submissions"))]
        constraints = [
            # external_id first: the queue's search looks a partner's id up without its source.
            models.UniqueConstraint(
                fields=["external_id", "source"],
                condition=~Q(external_id=""),
                name="ugc_submission_source_external_uniq",
            ),
            models.CheckConstraint(
                condition=Q(featured=False) | Q(status="approved"), name="ugc_submission_featured_approved"
            ),
            models.CheckConstraint(
                condition=~Q(status="rejected") | ~Q(reject_reason=""), name="ugc_submission_rejected_has_reason"
            ),
        ]
        indexes = [
            # The moderation queue: one status, newest first; and the flagged ones still waiting.
            models.Index(fields=["status", "-id"], name="ugc_submission_status_idx"),
            models.Index(
                fields=["-id"], condition=Q(flagged=True, status="pending"), name="ugc_submission_flagged_idx"
            ),
            models.Index(fields=["member", "-id"], name="ugc_submission_member_idx"),
            models.Index(fields=["-featured_at"], condition=Q(featured=True), name="ugc_submission_featured_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()}"


class SubmissionImage(models.Model):
    """A photo of a submission: a file uploaded with it, or the address where the partner keeps it."""

    submission = models.ForeignKey(
        Submission, on_delete=models.CASCADE, related_name="images", verbose_name=_("submission")
    )
    file = models.FileField(_("file"), upload_to="ugc/%Y/%m/", blank=True)
    url = models.URLField(_("address"), max_length=500, blank=True)
    content_type = models.CharField(_("content type"), max_length=32, blank=True)
    size = models.PositiveIntegerField(_("size in bytes"), null=True, blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("photo")
        verbose_name_plural = _("photos")
        ordering = ["submission", "position"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(file="") & ~Q(url="")) | (~Q(file="") & Q(url="")), name="ugc_image_file_or_url"
            )
        ]

    def __str__(self) -> str:
        return self.url or self.file.name

    @property
    def address(self) -> str:
        return self.url or self.file.url


class ModerationAction(models.TextChoices):
    APPROVE = "approve", _("Approved")
    REJECT = "reject", _("Rejected")
    FEATURE = "feature", _("Featured")
    UNFEATURE = "unfeature", _("No longer featured")


class ModerationDecision(models.Model):
    """Who decided what about a submission, and when. Append-only: the moderation audit trail."""

    submission = models.ForeignKey(
        Submission, on_delete=models.CASCADE, related_name="decisions", verbose_name=_("submission"), db_index=False
    )
    action = models.CharField(_("action"), max_length=16, choices=ModerationAction)
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("by")
    )
    at = models.DateTimeField(_("at"), db_index=True)

    class Meta:
        verbose_name = _("moderation decision")
        verbose_name_plural = _("moderation decisions")
        indexes = [models.Index(fields=["submission", "-id"], name="ugc_decision_submission_idx")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} #{self.submission_id}"


class SensitiveWord(BaseModel):
    """A word or phrase that flags a submission for a closer look before anyone approves it.

    Matching ignores case, spaces, punctuation and full-width forms (see sensitive_words.py).
    """

    word = models.CharField(
        _("word or phrase"),
        max_length=100,
        unique=True,
        help_text=_("Matched anywhere in the title and text, ignoring case, spaces and punctuation."),
    )
    is_active = models.BooleanField(_("active"), default=True, help_text=_("Inactive words are not checked."))
    note = models.CharField(_("note"), max_length=200, blank=True, help_text=_("Why it is on the list."))

    class Meta:
        verbose_name = _("sensitive word")
        verbose_name_plural = _("sensitive words")
        ordering = ["word"]

    def __str__(self) -> str:
        return self.word


# Co-creation polls ---------------------------------------------------------------------------


class PollStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    OPEN = "open", _("Open for votes")
    CLOSED = "closed", _("Closed")


class Poll(BaseModel):
    """A co-creation vote, e.g. on the next flavour. One vote per member; the winner's proposer
    is rewarded once when a supervisor closes the poll."""

    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    status = models.CharField(_("status"), max_length=16, choices=PollStatus, default=PollStatus.DRAFT)
    closes_at = models.DateTimeField(
        _("voting ends"), null=True, blank=True, help_text=_("Votes after this are refused; empty: until closed.")
    )
    reward_points = models.PositiveIntegerField(
        _("points for the winning proposer"),
        default=500,
        help_text=_("Given once, when the poll is closed, to the member who proposed the winning option; 0: none."),
    )
    reward_coupon_batch = models.ForeignKey(
        "loyalty.CouponBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("coupon for the winning proposer"),
        help_text=_("Optional: a coupon of this batch is given to the winning proposer as well."),
    )
    winner = models.ForeignKey(
        "PollOption", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("winner")
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("closed by"),
    )

    class Meta:
        verbose_name = _("co-creation poll")
        verbose_name_plural = _("co-creation polls")
        permissions = [("close_poll", _("Can close co-creation polls and reward the winner"))]
        indexes = [models.Index(fields=["status", "-id"], name="ugc_poll_status_idx")]

    def __str__(self) -> str:
        return self.title


class PollOption(models.Model):
    poll = models.ForeignKey(Poll, on_delete=models.CASCADE, related_name="options", verbose_name=_("poll"))
    label = models.CharField(_("option"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    proposer = models.ForeignKey(
        "members.Member",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("proposed by"),
        help_text=_("The member who proposed it, rewarded if it wins; empty for the brand's own options."),
    )
    submission = models.ForeignKey(
        Submission,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("from the proposal"),
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("poll option")
        verbose_name_plural = _("poll options")
        ordering = ["poll", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["poll", "label"], name="ugc_polloption_label_uniq")]

    def __str__(self) -> str:
        return self.label


class PollVote(models.Model):
    """One member's vote in a poll: unique per (poll, member)."""

    poll = models.ForeignKey(
        Poll, on_delete=models.CASCADE, related_name="votes", verbose_name=_("poll"), db_index=False
    )
    option = models.ForeignKey(PollOption, on_delete=models.CASCADE, related_name="votes", verbose_name=_("option"))
    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("member"), db_index=False
    )
    source = models.CharField(_("source"), max_length=64)
    voted_at = models.DateTimeField(_("voted at"))

    class Meta:
        verbose_name = _("vote")
        verbose_name_plural = _("votes")
        constraints = [models.UniqueConstraint(fields=["poll", "member"], name="ugc_pollvote_one_per_member")]
        # Results count votes per option of a poll from this index alone.
        indexes = [models.Index(fields=["poll", "option"], name="ugc_pollvote_results_idx")]

    def __str__(self) -> str:
        return f"{self.member_id} → {self.option_id}"
