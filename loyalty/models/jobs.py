"""Runs of loyalty's jobs, for staff to see what ran, how much it did and what failed: the periodic
ones, and the grants of points or coupons to a member list that staff start from the member admin."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class LoyaltyJob(models.TextChoices):
    POINTS_EXPIRY = "points_expiry", _("Points expiry")
    TIER_REVIEW = "tier_review", _("Tier review")
    BADGE_AWARDS = "badge_awards", _("Badge and title awards")
    RECONCILIATION = "reconciliation", _("Ledger reconciliation")
    EARN_BACKFILL = "earn_backfill", _("Points earning backfill")
    COUPON_EXPIRY = "coupon_expiry", _("Coupon expiry")
    GRANT_POINTS = "grant_points", _("Points given to a member list")
    ISSUE_COUPONS = "issue_coupons", _("Coupons issued to a member list")


class LoyaltyJobRun(models.Model):
    """One run of a loyalty job: started, finished, rows it wrote or found, and how it ended.

    Written by loyalty.services.jobs.job_run around the job's service; never edited by staff.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Done")
        FAILED = "failed", _("Failed")
        ABANDONED = "abandoned", _("Abandoned (the worker stopped)")

    job = models.CharField(_("job"), max_length=32, choices=LoyaltyJob)
    status = models.CharField(_("status"), max_length=16, choices=Status, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    rows = models.BigIntegerField(
        _("rows"),
        default=0,
        help_text=_("Entries, awards or changes written; for the reconciliation, drifting accounts."),
    )
    details = models.JSONField(
        _("details"), default=dict, blank=True, help_text=_("Counts by kind, as the job reports them.")
    )
    error = models.TextField(_("error"), blank=True)
    # For grants to a member list: what to give, who asked, the confirmation page's token (one
    # run per confirmation, however often it is submitted) and how far the worker got.
    key = models.CharField(_("key"), max_length=64, null=True, blank=True, unique=True, editable=False)
    params = models.JSONField(_("parameters"), default=dict, blank=True, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requested by"),
    )
    member_count = models.PositiveIntegerField(_("members"), default=0, help_text=_("Members in the list, for grants."))
    progress = models.PositiveSmallIntegerField(_("progress (%)"), default=0)

    class Meta:
        verbose_name = _("loyalty job run")
        verbose_name_plural = _("loyalty job runs")
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["job", "-started_at"], name="loyaltyjobrun_job_idx")]

    def __str__(self) -> str:
        return f"{self.get_job_display()} #{self.pk}"

    @property
    def duration(self):
        return self.finished_at - self.started_at if self.finished_at else None


class LoyaltyJobMember(models.Model):
    """The member list of a grant, as it was when staff confirmed it; removed when the grant is done."""

    run = models.ForeignKey(LoyaltyJobRun, on_delete=models.CASCADE, related_name="+", db_index=False)
    # No foreign key constraint: a list of a million members is written in one statement, and
    # the grant itself only credits members that still exist.
    member = models.ForeignKey(
        "members.Member", on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )

    class Meta:
        verbose_name = _("member of a loyalty job")
        verbose_name_plural = _("members of loyalty jobs")
        constraints = [models.UniqueConstraint(fields=["run", "member"], name="loyaltyjobmember_uniq")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.member_id}"
