"""The rewards catalog, redemptions, coupon batches and coupons."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel
from loyalty.models.points import PointsEntry
from loyalty.models.tiers import Tier


class Reward(BaseModel):
    """Something members buy with points from the catalog (a gift, a trial, a service)."""

    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    points_price = models.PositiveIntegerField(_("price (points)"), validators=[MinValueValidator(1)])
    stock = models.PositiveIntegerField(
        _("stock"), null=True, blank=True, help_text=_("How many are left. Empty: unlimited.")
    )
    per_member_limit = models.PositiveSmallIntegerField(
        _("limit per member"), null=True, blank=True, help_text=_("Empty: no limit.")
    )
    min_tier = models.ForeignKey(
        Tier,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("lowest tier"),
        help_text=_("Only members of this tier or a higher one may redeem it. Empty: everyone."),
    )
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("reward")
        verbose_name_plural = _("rewards")
        ordering = ["points_price", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(points_price__gte=1), name="reward_points_price_gte_1"),
            models.CheckConstraint(condition=Q(stock__isnull=True) | Q(stock__gte=0), name="reward_stock_gte_0"),
        ]

    def __str__(self) -> str:
        return self.name


class RewardRedemption(models.Model):
    """A member's redemption of a reward, with the ledger entry that paid for it. Append-only."""

    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="redemptions", verbose_name=_("reward"))
    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="reward_redemptions", verbose_name=_("member")
    )
    points_entry = models.OneToOneField(
        PointsEntry, on_delete=models.PROTECT, related_name="reward_redemption", verbose_name=_("points entry")
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    created_at = models.DateTimeField(_("redeemed at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("reward redemption")
        verbose_name_plural = _("reward redemptions")
        indexes = [models.Index(fields=["member", "reward"], name="rewardredemption_member_idx")]

    def __str__(self) -> str:
        return f"{self.member} · {self.reward}"


class CouponKind(models.TextChoices):
    AMOUNT = "amount", _("Amount off (yuan)")
    PERCENT = "percent", _("Percent off")


class CouponBatch(BaseModel):
    """A coupon definition, e.g. "满 200 减 50, valid in May"; its coupons are issued to members."""

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=16, choices=CouponKind, default=CouponKind.AMOUNT)
    value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
        # xgettext:no-python-format
        help_text=_("Yuan off, or percent off (10 for 10% off)."),
    )
    min_spend = models.DecimalField(
        _("minimum spend (yuan)"), max_digits=10, decimal_places=2, default=0, validators=[MinValueValidator(0)]
    )
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"))

    class Meta:
        verbose_name = _("coupon batch")
        verbose_name_plural = _("coupon batches")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gt=0), name="couponbatch_value_gt_0"),
            models.CheckConstraint(
                condition=~Q(kind=CouponKind.PERCENT) | Q(value__lte=100), name="couponbatch_percent_lte_100"
            ),
            models.CheckConstraint(
                condition=Q(valid_until__gt=models.F("valid_from")), name="couponbatch_until_after_from"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CouponStatus(models.TextChoices):
    ISSUED = "issued", _("Issued")
    USED = "used", _("Used")
    EXPIRED = "expired", _("Expired")


class Coupon(models.Model):
    """One coupon of a batch, issued to one member, with a unique code; changed only by loyalty.services."""

    batch = models.ForeignKey(CouponBatch, on_delete=models.PROTECT, related_name="coupons", verbose_name=_("batch"))
    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="coupons", verbose_name=_("member")
    )
    code = models.CharField(_("code"), max_length=16, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=CouponStatus, default=CouponStatus.ISSUED)
    issue_key = models.CharField(
        _("issue key"),
        max_length=64,
        help_text=_(
            "One issuance (an admin form, a campaign step): issuing again with the same key gives nothing twice."
        ),
    )
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    order_ref = models.CharField(_("order"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        constraints = [
            models.UniqueConstraint(fields=["batch", "member", "issue_key"], name="coupon_issue_once"),
            models.CheckConstraint(
                condition=Q(used_at__isnull=True) | Q(status=CouponStatus.USED), name="coupon_used_at_iff_used"
            ),
        ]
        indexes = [
            models.Index(fields=["member", "status"], name="coupon_member_status_idx"),
            models.Index(fields=["expires_at"], condition=Q(status="issued"), name="coupon_due_idx"),
        ]

    def __str__(self) -> str:
        return self.code
