"""Earn rules and double-points windows, edited by staff."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel


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
        help_text=_(
            "Interactions: view, like, comment, share, live_watch, article_read. Member content: "
            "approved (the moderation step records approved posts with this sub-kind). Empty: any."
        ),
    )
    points = models.PositiveIntegerField(
        _("points"), help_text=_("Per yuan for purchases (amount rounded down), per event otherwise.")
    )
    daily_cap = models.PositiveIntegerField(
        _("daily cap"),
        null=True,
        blank=True,
        help_text=_(
            "At most this many points per member and day (brand's time zone) from this rule, "
            "multipliers included. Empty: no cap."
        ),
    )
    streak_days = models.PositiveSmallIntegerField(
        _("streak length (days)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(2)],
        help_text=_(
            "Check-ins: every time a member has checked in on this many consecutive days, the day's "
            "first check-in earns the bonus below as well (7: on the 7th, 14th, 21st… day)."
        ),
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
        help_text=_("2 doubles the points. When windows overlap, the largest factor applies (they do not multiply)."),
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
