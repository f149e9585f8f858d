"""Journeys that run by themselves (welcome, birthday, check-in challenge, referral, browse trigger)
and recall playbooks by churn reason. A journey is a campaign of one of those kinds; its steps say
when each message goes and what it gives."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel


class JourneyStep(BaseModel):
    """One step of a journey: when it fires (`value`, whose meaning depends on the journey kind),
    and the offer it gives to each member it reaches. Its message is the campaign's template with
    this step's key (or the campaign's template without a step)."""

    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.CASCADE, related_name="steps", verbose_name=_("campaign")
    )
    key = models.SlugField(_("key"), max_length=24, help_text=_("e.g. day0, day3; names the step's message."))
    value = models.PositiveIntegerField(
        _("when"),
        default=0,
        help_text=_(
            "Welcome: days after joining (0 = the day they join). Check-in challenge: the streak length in "
            "days (7, 21). Browse trigger: seconds a product was viewed without ordering (90). Referral: "
            "0 rewards when the invitee joins, 1 when the invitee first pays. Birthday: not used."
        ),
    )
    tier = models.ForeignKey(
        "loyalty.Tier",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tier"),
        help_text=_("Birthday: this step's gift is for members of this tier; empty: members of no other step's tier."),
    )
    offer_points = models.PositiveIntegerField(_("points offered"), default=0)
    coupon_batch = models.ForeignKey(
        "loyalty.CouponBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("coupon"),
    )
    badge = models.ForeignKey(
        "loyalty.Badge",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("badge"),
        help_text=_("Check-in challenge: the streak badge awarded with this step (by the badge's own rule)."),
    )
    is_active = models.BooleanField(_("on"), default=True)

    class Meta:
        verbose_name = _("journey step")
        verbose_name_plural = _("journey steps")
        ordering = ["campaign", "value", "key"]
        constraints = [models.UniqueConstraint(fields=["campaign", "key"], name="journeystep_unique")]

    def __str__(self) -> str:
        return self.key


class Referral(models.Model):
    """One rewarded referral. The unique constraints are the anti-farming rule: an invitee, a phone
    and a device each bring a reward once per referral campaign, however many accounts invite them."""

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.PROTECT, related_name="+")
    inviter = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("inviter"))
    invitee = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("invitee"))
    invitee_phone = models.CharField(_("invitee's phone"), max_length=32, blank=True)
    device = models.CharField(_("device"), max_length=128, blank=True, help_text=_("From the invite event."))
    invite_event = models.ForeignKey("members.MemberEvent", on_delete=models.SET_NULL, null=True, related_name="+")
    rewarded_at = models.DateTimeField(_("rewarded at"), default=timezone.now)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "invitee"], name="referral_invitee_once"),
            models.UniqueConstraint(
                fields=["campaign", "invitee_phone"], condition=~Q(invitee_phone=""), name="referral_phone_once"
            ),
            models.UniqueConstraint(
                fields=["campaign", "device"], condition=~Q(device=""), name="referral_device_once"
            ),
            models.CheckConstraint(condition=~Q(inviter=models.F("invitee")), name="referral_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.inviter_id} → {self.invitee_id}"


class ChurnReason(models.TextChoices):
    QUALITY = "quality", _("Quality")
    SERVICE = "service", _("Service")
    PRICE = "price", _("Price")
    COMPETITOR = "competitor", _("Competitor")
    UNKNOWN = "unknown", _("Unknown")


class RecallSettings(BaseModel):
    """How the recall job reads a member's history; exactly one row."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    history_days = models.PositiveSmallIntegerField(
        _("history considered (days)"),
        default=180,
        validators=[MinValueValidator(1)],
        help_text=_("Complaints and refunds older than this no longer explain why a member left."),
    )
    lapsed_category_days = models.PositiveSmallIntegerField(
        _("lapsed category after (days)"),
        default=60,
        validators=[MinValueValidator(1)],
        help_text=_(
            "A member who bought a category (a purchase event's category) before this many days ago and none "
            "of it since is taken to have gone to a competitor."
        ),
    )
    came_back_days = models.PositiveSmallIntegerField(
        _("came back within (days)"),
        default=14,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text=_("A recalled member who interacts or buys within this many days of the message came back."),
    )

    class Meta:
        verbose_name = _("recall settings")
        verbose_name_plural = _("recall settings")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="recallsettings_singleton")]

    def __str__(self) -> str:
        return str(_("Recall settings"))

    @classmethod
    def load(cls) -> "RecallSettings":
        return cls.objects.get_or_create(pk=cls.SINGLETON_ID)[0]


class RecallPlaybook(BaseModel):
    """What at-risk and churned members who left for one reason get: a recall campaign (its message,
    offer and control group), and how long before they may be contacted again."""

    reason = models.CharField(_("churn reason"), max_length=16, choices=ChurnReason, unique=True)
    campaign = models.OneToOneField(
        "campaigns.Campaign",
        on_delete=models.PROTECT,
        related_name="playbook",
        verbose_name=_("campaign"),
        help_text=_(
            "A campaign of kind Recall: its channel, message, offer (points or a coupon) and control group "
            "(holdout) are used. It runs while it is running; pause it to stop this playbook."
        ),
    )
    cooldown_days = models.PositiveSmallIntegerField(
        _("cooldown (days)"),
        default=30,
        validators=[MinValueValidator(1)],
        help_text=_("A member contacted by any recall playbook is not picked again for this many days."),
    )

    class Meta:
        verbose_name = _("recall playbook")
        verbose_name_plural = _("recall playbooks")
        ordering = ["reason"]

    def __str__(self) -> str:
        return self.get_reason_display()


class MemberChurnReason(models.Model):
    """Why staff know a member left; overrides what the recall job infers from the history."""

    member = models.OneToOneField(
        "members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("member")
    )
    reason = models.CharField(_("churn reason"), max_length=16, choices=ChurnReason)
    note = models.TextField(_("note"), blank=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("set by")
    )
    set_at = models.DateTimeField(_("set at"), default=timezone.now)

    class Meta:
        verbose_name = _("churn reason set by staff")
        verbose_name_plural = _("churn reasons set by staff")

    def __str__(self) -> str:
        return f"{self.member_id}: {self.reason}"
