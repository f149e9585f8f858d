"""Tiers, members' tiers, downgrade notices and tier history."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel
from loyalty.models.points import AppendOnlyError


class TierRule(models.TextChoices):
    SPEND = "spend", _("Spend")
    POINTS = "points", _("Points earned")
    EITHER = "either", _("Spend or points earned")
    BOTH = "both", _("Spend and points earned")


class Tier(BaseModel):
    """A membership level (青铜/白银/黄金/钻石 by default), its qualifying rule and its benefits.

    Installed by a migration and edited by staff; members qualify by what they spent and/or the
    points they earned over a trailing period.
    """

    code = models.SlugField(
        _("code"), max_length=32, unique=True, help_text=_("A stable name for partner systems, e.g. silver.")
    )
    name = models.CharField(_("name"), max_length=64, help_text=_("The name members see, e.g. 白银."))
    rank = models.PositiveSmallIntegerField(
        _("rank"), unique=True, help_text=_("Higher is better. The lowest tier is where every member starts.")
    )
    rule = models.CharField(
        _("qualifies by"),
        max_length=16,
        choices=TierRule,
        default=TierRule.SPEND,
        help_text=_("What a member must reach over the qualifying period to hold this tier."),
    )
    min_spend = models.DecimalField(
        _("qualifying spend (yuan)"),
        max_digits=12,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text=_("Purchases minus refunds over the qualifying period."),
    )
    min_points = models.PositiveIntegerField(
        _("qualifying points"), default=0, help_text=_("Points earned over the qualifying period.")
    )
    qualifying_period_days = models.PositiveSmallIntegerField(
        _("qualifying period (days)"),
        default=365,
        validators=[MinValueValidator(1)],
        help_text=_("The trailing window the spend and points are counted over, e.g. 365 for the last year."),
    )
    discount_percent = models.DecimalField(
        _("discount (%)"),
        max_digits=5,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        # xgettext:no-python-format
        help_text=_("Member price discount, e.g. 10 for 10% off."),
    )
    points_multiplier = models.DecimalField(
        _("points multiplier"),
        max_digits=4,
        decimal_places=2,
        default=1,
        validators=[MinValueValidator(0)],
        help_text=_("Earned points are multiplied by this, e.g. 1.5."),
    )
    birthday_gift = models.CharField(
        _("birthday gift"), max_length=255, blank=True, help_text=_("What members of this tier get on their birthday.")
    )
    benefits = models.TextField(
        _("other benefits"),
        blank=True,
        help_text=_("Exclusive events, early access, priority service… shown to members."),
    )
    validity_days = models.PositiveSmallIntegerField(
        _("validity (days)"),
        default=365,
        validators=[MinValueValidator(1)],
        help_text=_("How long a member keeps this tier once reached, before it is reviewed."),
    )

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["rank"]
        constraints = [
            models.CheckConstraint(
                condition=Q(discount_percent__gte=0) & Q(discount_percent__lte=100), name="tier_discount_percent_range"
            ),
            models.CheckConstraint(condition=Q(points_multiplier__gte=0), name="tier_points_multiplier_gte_0"),
            models.CheckConstraint(condition=Q(min_spend__gte=0), name="tier_min_spend_gte_0"),
            models.CheckConstraint(condition=Q(qualifying_period_days__gte=1), name="tier_period_gte_1"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def counts_spend(self) -> bool:
        return self.rule != TierRule.POINTS

    @property
    def counts_points(self) -> bool:
        return self.rule != TierRule.SPEND

    def is_reached(self, *, spend: Decimal, points: int) -> bool:
        """Whether spend and points earned over this tier's qualifying period reach it."""
        spend_ok, points_ok = spend >= self.min_spend, points >= self.min_points
        return {
            TierRule.SPEND: spend_ok,
            TierRule.POINTS: points_ok,
            TierRule.EITHER: spend_ok or points_ok,
            TierRule.BOTH: spend_ok and points_ok,
        }[self.rule]


class MemberTier(BaseModel):
    """A member's current tier; every change is also kept as a TierChange with its reason."""

    member = models.OneToOneField(
        "members.Member", on_delete=models.CASCADE, related_name="tier_status", verbose_name=_("member")
    )
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", verbose_name=_("tier"))
    since = models.DateTimeField(_("since"))
    valid_until = models.DateTimeField(
        _("valid until"), null=True, blank=True, help_text=_("When the tier is next reviewed.")
    )

    class Meta:
        verbose_name = _("member tier")
        verbose_name_plural = _("member tiers")
        indexes = [models.Index(fields=["tier", "member"], name="membertier_tier_member_idx")]

    def __str__(self) -> str:
        return f"{self.member}: {self.tier}"


class TierDowngradeNotice(models.Model):
    """The warning a member gets before dropping a tier at review ("you will drop to 白银 on …")."""

    class Outcome(models.TextChoices):
        DOWNGRADED = "downgraded", _("Downgraded")
        KEPT = "kept", _("Kept: qualified again")

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="tier_notices", verbose_name=_("member")
    )
    from_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", verbose_name=_("from"))
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", verbose_name=_("to"))
    message = models.CharField(_("message"), max_length=255)
    downgrade_on = models.DateTimeField(_("drops on"))
    created_at = models.DateTimeField(_("warned at"), default=timezone.now, editable=False)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome, blank=True)

    class Meta:
        verbose_name = _("tier downgrade notice")
        verbose_name_plural = _("tier downgrade notices")
        constraints = [
            models.UniqueConstraint(
                fields=["member"], condition=Q(resolved_at__isnull=True), name="tierdowngradenotice_one_open"
            ),
        ]

    def __str__(self) -> str:
        return self.message


class TierChange(models.Model):
    """History of a member's tier, append-only: from, to, why, by whom."""

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="tier_changes", verbose_name=_("member")
    )
    from_tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("from")
    )
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", verbose_name=_("to"))
    reason = models.CharField(_("reason"), max_length=255)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    created_at = models.DateTimeField(_("changed at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        indexes = [models.Index(fields=["member", "-id"], name="tierchange_member_idx")]

    def __str__(self) -> str:
        return f"{self.from_tier or '-'} → {self.to_tier}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Tier history is never edited; record a new change instead.")
        super().save(*args, **kwargs)
