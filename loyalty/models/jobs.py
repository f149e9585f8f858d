"""Runs of loyalty's periodic jobs, for staff to see what ran, how much it did and what failed."""

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
