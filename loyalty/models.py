from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel
from loyalty.expiry import ExpiryPolicy


class LoyaltySettings(BaseModel):
    """The loyalty numbers staff tune in the admin; exactly one row, installed by a migration."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    points_per_yuan = models.PositiveIntegerField(
        _("points per yuan"),
        default=50,
        validators=[MinValueValidator(1)],
        help_text=_("How many points are worth 1 yuan when a member redeems them. Also values the points "
                    "liability report."),
    )
    redemption_minimum = models.PositiveIntegerField(
        _("redemption minimum (points)"),
        default=0,
        help_text=_("The fewest points a member may redeem at once; 0 means no minimum. "
                    "A high minimum keeps members from using their points at all."),
    )
    expiry_policy = models.CharField(
        _("points expire"),
        max_length=16,
        choices=ExpiryPolicy,
        default=ExpiryPolicy.END_OF_MONTH,
        help_text=_("When newly earned points stop being valid. Changing it affects points earned from now "
                    "on; points already earned keep the date they were given."),
    )
    expiry_period = models.PositiveSmallIntegerField(
        _("validity (months or days)"),
        default=12,
        help_text=_("N in the policy above: months for \"end of the Nth month\", days for \"end of the Nth "
                    "day\". 12 with the month policy: points earned in March 2026 expire after 31 March 2027."),
    )

    tier_grace_days = models.PositiveSmallIntegerField(
        _("tier grace period (days)"),
        default=30,
        help_text=_("When a review finds a member below their tier, they are warned and keep it this many days "
                    "before dropping; reaching it again meanwhile keeps it."),
    )

    class Meta:
        verbose_name = _("loyalty settings")
        verbose_name_plural = _("loyalty settings")
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="loyaltysettings_singleton"),
            models.CheckConstraint(condition=Q(points_per_yuan__gte=1), name="loyaltysettings_points_per_yuan_gte_1"),
        ]

    def __str__(self) -> str:
        return str(_("Loyalty settings"))

    @classmethod
    def load(cls) -> "LoyaltySettings":
        # The migration installs the row; get_or_create also covers a flushed test database.
        return cls.objects.get_or_create(pk=cls.SINGLETON_ID)[0]


class PointsAccount(BaseModel):
    """A member's cached balance and lifetime totals; the ledger (PointsEntry) is the truth.

    Written only by loyalty.services under a row lock. The lifetime totals are net of
    reversals, so balance = earned - redeemed - expired at all times.
    """

    # PROTECT: points are a liability of the brand; a member with a ledger is anonymised, not deleted.
    member = models.OneToOneField(
        "members.Member", on_delete=models.PROTECT, related_name="points_account", verbose_name=_("member")
    )
    balance = models.IntegerField(_("balance"), default=0, editable=False)
    lifetime_earned = models.IntegerField(
        _("earned"), default=0, editable=False, help_text=_("Earned and adjusted points, net of reversals.")
    )
    lifetime_redeemed = models.IntegerField(
        _("redeemed"), default=0, editable=False, help_text=_("Redeemed points, net of cancelled redemptions.")
    )
    lifetime_expired = models.IntegerField(_("expired"), default=0, editable=False)

    class Meta:
        verbose_name = _("points account")
        verbose_name_plural = _("points accounts")
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="pointsaccount_balance_gte_0"),
            models.CheckConstraint(condition=Q(lifetime_earned__gte=0), name="pointsaccount_earned_gte_0"),
            models.CheckConstraint(condition=Q(lifetime_redeemed__gte=0), name="pointsaccount_redeemed_gte_0"),
            models.CheckConstraint(condition=Q(lifetime_expired__gte=0), name="pointsaccount_expired_gte_0"),
        ]
        indexes = [models.Index(fields=["balance", "id"], name="pointsaccount_balance_idx")]

    def __str__(self) -> str:
        return str(self.member)


class EntryKind(models.TextChoices):
    EARN = "earn", _("Earn")
    REDEEM = "redeem", _("Redeem")
    EXPIRE = "expire", _("Expire")
    ADJUST = "adjust", _("Adjustment")
    REVERSE = "reverse", _("Reversal")


# Open lots in the order debits consume them: soonest expiry first, never-expiring lots last.
LOT_SPENDING_ORDER = (models.F("expires_at").asc(nulls_last=True), "id")


class AppendOnlyError(Exception):
    """Raised when code tries to edit or delete a ledger row."""


class PointsEntry(models.Model):
    """One movement of points. Append-only: corrections are reversing entries.

    A credit (positive amount, kind earn or adjust) is also a *lot*: `remaining` is what is left
    of it to spend or expire, and `expires_at` when it expires. Debits consume lots soonest-
    expiring first, then oldest first (see loyalty.services). `remaining` is the only column that
    ever changes, and only through loyalty.services under the account's row lock.
    """

    member = models.ForeignKey(
        "members.Member", on_delete=models.PROTECT, related_name="points_entries", verbose_name=_("member")
    )
    kind = models.CharField(_("kind"), max_length=16, choices=EntryKind)
    amount = models.IntegerField(_("points"), help_text=_("Positive for credits, negative for debits."))
    reason = models.CharField(_("reason"), max_length=255)
    source_event = models.ForeignKey(
        "members.MemberEvent",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="points_entries",
        verbose_name=_("source event"),
    )
    idempotency_key = models.CharField(
        _("idempotency key"),
        max_length=128,
        unique=True,
        help_text=_("Unique per movement; a retry with the same key returns the first entry and changes nothing."),
    )
    # PROTECT: an auditor must always see who moved points by hand; deactivate staff instead.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    remaining = models.IntegerField(
        _("remaining"), null=True, blank=True, help_text=_("For credits: points of this lot not yet spent or expired.")
    )
    reverses = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversal",
        verbose_name=_("reverses"),
    )
    source_ref = models.CharField(
        _("source"),
        max_length=64,
        blank=True,
        db_default="",
        help_text=_(
            "What gave these points when it is not a behaviour event, as 'kind:id' "
            "(for example 'ticket:12' for a crisis ticket's compensation)."
        ),
    )
    # No index: only the daily cap reads it, for entries already narrowed down by member.
    earn_rule = models.ForeignKey(
        "EarnRule", on_delete=models.PROTECT, null=True, blank=True, db_index=False, related_name="+",
        verbose_name=_("earn rule"),
    )
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("points entry")
        verbose_name_plural = _("points ledger")
        permissions = [("adjust_points", _("Can adjust and reverse members' points by hand"))]
        constraints = [
            # A reversal may move nothing (the points had expired); it is still recorded.
            models.CheckConstraint(
                condition=~Q(amount=0) | Q(kind=EntryKind.REVERSE), name="pointsentry_amount_nonzero"
            ),
            models.CheckConstraint(
                condition=Q(remaining__isnull=True) | (Q(remaining__gte=0) & Q(remaining__lte=models.F("amount"))),
                name="pointsentry_remaining_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(remaining__isnull=True) | Q(kind__in=[EntryKind.EARN, EntryKind.ADJUST]),
                name="pointsentry_only_credits_are_lots",
            ),
            models.CheckConstraint(
                condition=Q(reverses__isnull=True) | Q(kind=EntryKind.REVERSE),
                name="pointsentry_reverses_only_on_reversals",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-id"], name="pointsentry_member_idx"),
            # Spending order of a member's open lots, and the nightly expiry scan.
            models.Index(
                fields=["member", "expires_at", "id"],
                condition=Q(remaining__gt=0),
                name="pointsentry_open_lot_idx",
            ),
            models.Index(fields=["expires_at"], condition=Q(remaining__gt=0), name="pointsentry_due_lot_idx"),
            models.Index(fields=["created_at"], name="pointsentry_created_idx"),
            # Everything one source gave (a ticket's compensation cost); most entries have none.
            models.Index(fields=["source_ref"], condition=~Q(source_ref=""), name="pointsentry_source_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount:+d}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Points entries are never edited; record a reversing entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Points entries are never deleted; record a reversing entry instead.")


class PointsAllocation(models.Model):
    """Which lots a debit consumed (positive) or a cancelled debit gave back (negative).

    Kept so that cancelling a redemption returns the points to the lots they came from, with
    their original expiry dates, and so that staff can see where spent points came from. For
    every lot: remaining = amount - allocations - its expiry entry.
    """

    entry = models.ForeignKey(
        PointsEntry, on_delete=models.PROTECT, related_name="allocations", verbose_name=_("entry")
    )
    lot = models.ForeignKey(
        PointsEntry, on_delete=models.PROTECT, related_name="lot_allocations", verbose_name=_("lot")
    )
    amount = models.IntegerField(_("points"))

    class Meta:
        verbose_name = _("points allocation")
        verbose_name_plural = _("points allocations")
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="pointsallocation_amount_nonzero")]

    def __str__(self) -> str:
        return f"{self.entry_id}→{self.lot_id}: {self.amount}"


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
        _("qualifies by"), max_length=16, choices=TierRule, default=TierRule.SPEND,
        help_text=_("What a member must reach over the qualifying period to hold this tier."),
    )
    min_spend = models.DecimalField(
        _("qualifying spend (yuan)"), max_digits=12, decimal_places=2, default=0,
        validators=[MinValueValidator(0)],
        help_text=_("Purchases minus refunds over the qualifying period."),
    )
    min_points = models.PositiveIntegerField(
        _("qualifying points"), default=0, help_text=_("Points earned over the qualifying period.")
    )
    qualifying_period_days = models.PositiveSmallIntegerField(
        _("qualifying period (days)"), default=365, validators=[MinValueValidator(1)],
        help_text=_("The trailing window the spend and points are counted over, e.g. 365 for the last year."),
    )
    discount_percent = models.DecimalField(
        _("discount (%)"), max_digits=5, decimal_places=2, default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        # xgettext:no-python-format
        help_text=_("Member price discount, e.g. 10 for 10% off."),
    )
    points_multiplier = models.DecimalField(
        _("points multiplier"), max_digits=4, decimal_places=2, default=1,
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
        _("validity (days)"), default=365, validators=[MinValueValidator(1)],
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
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
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


# Earning -----------------------------------------------------------------------------------


class EarnRuleKind(models.TextChoices):
    """What a rule pays for; each value is the behaviour event kind it matches."""

    PURCHASE = "purchase", _("Purchase: points per yuan spent")
    CHECK_IN = "check_in", _("Check-in, with a streak bonus")
    INTERACTION = "interaction", _("Interaction (view, like, comment, share…)")
    INVITE = "invite", _("Invite")
    UGC = "ugc", _("Approved member content (UGC)")


class EarnRule(BaseModel):
    """How many points one kind of behaviour earns; staff edit these in the admin.

    At most one rule per kind and sub-kind. An event uses the rule of its exact sub-kind, or else
    the rule of its kind with an empty sub-kind. Earned points are then multiplied by the
    member's tier multiplier and by the largest double-points window open when the event happened.
    """

    name = models.CharField(
        _("name"), max_length=100, help_text=_("Shown to members in their points history, e.g. 消费 1 元得 1 积分.")
    )
    kind = models.CharField(_("earns for"), max_length=16, choices=EarnRuleKind)
    sub_kind = models.CharField(
        _("only this sub-kind"),
        max_length=32,
        blank=True,
        help_text=_("Interactions: view, like, comment, share, live_watch, article_read. Member content: "
                    "approved (the moderation step records approved posts with this sub-kind). Empty: any."),
    )
    points = models.PositiveIntegerField(
        _("points"), help_text=_("Per yuan for purchases (amount rounded down), per event otherwise.")
    )
    daily_cap = models.PositiveIntegerField(
        _("daily cap"),
        null=True,
        blank=True,
        help_text=_("At most this many points per member and day (brand's time zone) from this rule, "
                    "multipliers included. Empty: no cap."),
    )
    streak_days = models.PositiveSmallIntegerField(
        _("streak length (days)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(2)],
        help_text=_("Check-ins: every time a member has checked in on this many consecutive days, the day's "
                    "first check-in earns the bonus below as well (7: on the 7th, 14th, 21st… day)."),
    )
    streak_bonus = models.PositiveIntegerField(_("streak bonus (points)"), default=0)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("earn rule")
        verbose_name_plural = _("earn rules")
        ordering = ["kind", "sub_kind"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "sub_kind"], name="earnrule_kind_sub_kind_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class PointsMultiplierWindow(BaseModel):
    """A limited-time double points (积分翻倍) campaign: events that happen inside it earn `factor`×."""

    name = models.CharField(_("name"), max_length=100)
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    factor = models.DecimalField(
        _("factor"),
        max_digits=4,
        decimal_places=2,
        default=Decimal(2),
        validators=[MinValueValidator(Decimal(1))],
        help_text=_("2 doubles the points. When windows overlap, the largest factor applies (they do not "
                    "multiply)."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("double points window")
        verbose_name_plural = _("double points windows")
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="multiplierwindow_ends_after_start"
            ),
            models.CheckConstraint(condition=Q(factor__gte=1), name="multiplierwindow_factor_gte_1"),
        ]

    def __str__(self) -> str:
        return self.name


# Rewards and coupons -----------------------------------------------------------------------


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
        Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("lowest tier"),
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
        _("value"), max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))],
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
        _("issue key"), max_length=64,
        help_text=_("One issuance (an admin form, a campaign step): issuing again with the same key gives "
                    "nothing twice."),
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


# Honors and badges -------------------------------------------------------------------------


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
        _("N"), max_digits=12, decimal_places=2, default=0, validators=[MinValueValidator(0)],
        help_text=_("Days, a count, yuan or a percentage, as the rule says."),
    )
    period_days = models.PositiveSmallIntegerField(
        _("period (days)"), null=True, blank=True,
        help_text=_("Count only the last N days of behaviour. Empty: all of it (the top-active rule needs a "
                    "period; without one it uses 30 days)."),
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
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=_("awarded by"),
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_reason = models.CharField(_("why revoked"), max_length=255, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
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
