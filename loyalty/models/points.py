"""The points ledger: settings, accounts, entries (lots) and what each debit consumed."""

from django.conf import settings
from django.core.validators import MinValueValidator
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
        help_text=_(
            "How many points are worth 1 yuan when a member redeems them. Also values the points liability report."
        ),
    )
    redemption_minimum = models.PositiveIntegerField(
        _("redemption minimum (points)"),
        default=0,
        help_text=_(
            "The fewest points a member may redeem at once; 0 means no minimum. "
            "A high minimum keeps members from using their points at all."
        ),
    )
    expiry_policy = models.CharField(
        _("points expire"),
        max_length=16,
        choices=ExpiryPolicy,
        default=ExpiryPolicy.END_OF_MONTH,
        help_text=_(
            "When newly earned points stop being valid. Changing it affects points earned from now "
            "on; points already earned keep the date they were given."
        ),
    )
    expiry_period = models.PositiveSmallIntegerField(
        _("validity (months or days)"),
        default=12,
        help_text=_(
            'N in the policy above: months for "end of the Nth month", days for "end of the Nth '
            'day". 12 with the month policy: points earned in March 2026 expire after 31 March 2027.'
        ),
    )

    tier_grace_days = models.PositiveSmallIntegerField(
        _("tier grace period (days)"),
        default=30,
        help_text=_(
            "When a review finds a member below their tier, they are warned and keep it this many days "
            "before dropping; reaching it again meanwhile keeps it."
        ),
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

    # No index of its own: pointsentry_member_idx (member, -id) serves every lookup by member.
    member = models.ForeignKey(
        "members.Member",
        on_delete=models.PROTECT,
        related_name="points_entries",
        verbose_name=_("member"),
        db_index=False,
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
    # Unique by a constraint in Meta, not unique=True: that also builds a second index for LIKE
    # searches, which nothing runs and every insert into the ledger paid for.
    idempotency_key = models.CharField(
        _("idempotency key"),
        max_length=128,
        help_text=_("Unique per movement; a retry with the same key returns the first entry and changes nothing."),
    )
    # PROTECT: an auditor must always see who moved points by hand; deactivate staff instead.
    # Indexed only where set (pointsentry_actor_idx): most entries are the system's.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
        db_index=False,
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
        "EarnRule",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
        verbose_name=_("earn rule"),
    )
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("points entry")
        verbose_name_plural = _("points ledger")
        permissions = [("adjust_points", _("Can adjust and reverse members' points by hand"))]
        constraints = [
            # The name PostgreSQL gave the column's UNIQUE when the table was created.
            models.UniqueConstraint(fields=["idempotency_key"], name="loyalty_pointsentry_idempotency_key_key"),
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
            models.Index(fields=["actor"], condition=Q(actor__isnull=False), name="pointsentry_actor_idx"),
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
