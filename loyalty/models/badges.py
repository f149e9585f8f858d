"""Badges and honorary titles, and the members who hold them."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel


class BadgeKind(models.TextChoices):
    BADGE = "badge", _("Badge")
    TITLE = "title", _("Honorary title")


class BadgeRule(models.TextChoices):
    CHECK_IN_STREAK = "check_in_streak", _("Checked in on N consecutive days")
    CHECK_IN_TOTAL = "check_in_total", _("Checked in on N days in all")
    UGC_APPROVED = "ugc_approved", _("N approved member posts (UGC)")
    INVITES = "invites", _("Invited N times")
    SPEND = "spend", _("Spent N yuan over the period")
    TOP_ACTIVE = "top_active", _("Among the N% most active members over the period")
    MANUAL = "manual", _("Awarded by staff")


class Badge(BaseModel):
    """A badge or an honorary title (首席体验官, 活跃之星, 社群达人), its rule and what it brings.

    The nightly job awards badges with a rule to every member who meets it, once: a member holds
    a badge at most once (MemberBadge is unique on member and badge).
    """

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64, help_text=_("What members see, e.g. 活跃之星."))
    kind = models.CharField(_("kind"), max_length=16, choices=BadgeKind, default=BadgeKind.BADGE)
    description = models.TextField(_("description"), blank=True)
    privileges = models.TextField(
        _("privileges"), blank=True, help_text=_("What holders get, e.g. priority trials, exclusive service.")
    )
    rule = models.CharField(_("awarded for"), max_length=32, choices=BadgeRule, default=BadgeRule.MANUAL)
    threshold = models.DecimalField(
        _("N"),
        max_digits=12,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text=_("Days, a count, yuan or a percentage, as the rule says."),
    )
    period_days = models.PositiveSmallIntegerField(
        _("period (days)"),
        null=True,
        blank=True,
        help_text=_(
            "Count only the last N days of behaviour. Empty: all of it (the top-active rule needs a "
            "period; without one it uses 30 days)."
        ),
    )
    validity_days = models.PositiveSmallIntegerField(
        _("held for (days)"), null=True, blank=True, help_text=_("Titles lapse this long after the award. Empty: kept.")
    )
    is_public = models.BooleanField(_("on the honor roll"), default=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("badge or title")
        verbose_name_plural = _("badges and titles")
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return self.name


class MemberBadge(models.Model):
    """A member's badge or title: awarded once, possibly lapsing (expires_at) or revoked by staff."""

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="badges", verbose_name=_("member")
    )
    badge = models.ForeignKey(Badge, on_delete=models.PROTECT, related_name="holders", verbose_name=_("badge"))
    awarded_at = models.DateTimeField(_("awarded at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    awarded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("awarded by"),
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_reason = models.CharField(_("why revoked"), max_length=255, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("revoked by"),
    )

    class Meta:
        verbose_name = _("member badge")
        verbose_name_plural = _("member badges")
        permissions = [("award_badges", _("Can award and revoke badges and titles by hand"))]
        constraints = [models.UniqueConstraint(fields=["member", "badge"], name="memberbadge_once")]
        indexes = [models.Index(fields=["badge", "-awarded_at"], name="memberbadge_badge_idx")]

    def __str__(self) -> str:
        return f"{self.member} · {self.badge}"
