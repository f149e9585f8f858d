"""Campaigns, their message templates, and the outbox every outbound message goes through."""

from datetime import time

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel


class CampaignKind(models.TextChoices):
    WELCOME = "welcome", _("Welcome flow")
    BIRTHDAY = "birthday", _("Birthday")
    CHECK_IN = "check_in", _("Check-in challenge")
    REFERRAL = "referral", _("Referral")
    DOUBLE_POINTS = "double_points", _("Double points")
    CO_CREATION = "co_creation", _("Co-creation vote")
    FLASH_SALE = "flash_sale", _("Flash-sale reminder")
    SURVEY = "survey", _("Survey")
    RECALL = "recall", _("Recall")
    BROWSE = "browse", _("Viewed without ordering")
    BROADCAST = "broadcast", _("Broadcast")


# Kinds whose audience the campaign finds by itself, every day, from what members do.
JOURNEY_KINDS = frozenset(
    {CampaignKind.WELCOME, CampaignKind.BIRTHDAY, CampaignKind.CHECK_IN, CampaignKind.REFERRAL, CampaignKind.BROWSE}
)
# Kinds that need no segment or list of their own.
SELF_TARGETING_KINDS = JOURNEY_KINDS | {CampaignKind.RECALL, CampaignKind.DOUBLE_POINTS}


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
    SCHEDULED = "scheduled", _("Scheduled")
    RUNNING = "running", _("Running")
    PAUSED = "paused", _("Paused")
    FINISHED = "finished", _("Finished")
    CANCELLED = "cancelled", _("Cancelled")


class MessageChannel(models.TextChoices):
    SMS = "sms", _("SMS")
    EMAIL = "email", _("E-mail")
    WECOM = "wecom", _("WeCom")
    IN_APP = "in_app", _("In-app message")


class MessageLanguage(models.TextChoices):
    CHINESE = "zh-hans", _("Chinese")
    ENGLISH = "en", _("English")


class MessageCategory(models.TextChoices):
    PROMOTIONAL = "promotional", _("Promotional")
    TRANSACTIONAL = "transactional", _("Transactional")


class Campaign(BaseModel):
    """What staff send, to whom and when. Edited only as a draft; its status moves only through
    campaigns.services.campaign_transition, which records every move."""

    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("kind"), max_length=16, choices=CampaignKind, default=CampaignKind.BROADCAST)
    status = models.CharField(
        _("status"), max_length=20, choices=CampaignStatus, default=CampaignStatus.DRAFT, editable=False
    )
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel, default=MessageChannel.WECOM)
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=MessageLanguage,
        default=MessageLanguage.CHINESE,
        help_text=_("Which variant of the message templates is sent."),
    )
    category = models.CharField(
        _("message category"),
        max_length=16,
        choices=MessageCategory,
        default=MessageCategory.PROMOTIONAL,
        help_text=_(
            "Promotional messages count against the frequency caps and wait out the quiet hours; "
            "transactional ones (a crisis notice, a redemption receipt) do neither but are still recorded."
        ),
    )
    # Audience: a segment, or a list of member numbers pasted or uploaded by staff.
    segment = models.ForeignKey(
        "members.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("segment"),
        help_text=_("Send to the members of this segment, as last computed."),
    )
    member_numbers = models.TextField(
        _("member numbers"),
        blank=True,
        help_text=_("Or send to these members: member numbers separated by new lines, commas or spaces."),
    )
    # Schedule, in Asia/Shanghai wall-clock time.
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    send_time = models.TimeField(
        _("send time"),
        null=True,
        blank=True,
        help_text=_("Time of day (Asia/Shanghai) the message goes out; empty sends as soon as the campaign starts."),
    )
    # The offer, given to each member the message reached (journeys set it per step instead).
    offer_points = models.PositiveIntegerField(
        _("points offered"),
        default=0,
        help_text=_("Credited to each member once the message has gone out; once per member and step."),
    )
    coupon_batch = models.ForeignKey(
        "loyalty.CouponBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("coupon"),
        help_text=_("A coupon of this batch is issued to each member the message reached."),
    )
    offer_multiplier = models.DecimalField(
        _("points multiplier"),
        max_digits=4,
        decimal_places=2,
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text=_(
            "Double-points campaigns: points earned while the campaign runs are multiplied by this (2 for "
            "double points), through a points multiplier window that follows the campaign's status."
        ),
    )
    multiplier_window = models.OneToOneField(
        "loyalty.PointsMultiplierWindow",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign",
        verbose_name=_("double points window"),
        editable=False,
    )
    # A/B test: the share of the audience kept out as a control group, and how long after its
    # message a purchase still counts as a conversion.
    holdout_percent = models.PositiveSmallIntegerField(
        _("holdout (%)"),
        default=0,
        validators=[MaxValueValidator(50)],
        help_text=_(
            "This share of the audience gets nothing and serves as the control group, so the results "
            "show whether the campaign worked, not just whether it was opened."
        ),
    )
    conversion_days = models.PositiveSmallIntegerField(
        _("conversion window (days)"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text=_("A purchase within this many days of the planned send counts as a conversion."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
        editable=False,
    )

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at"]
        permissions = [("approve_campaign", _("Can approve, resume and cancel campaigns"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="campaign_ends_after_start",
            ),
        ]
        indexes = [models.Index(fields=["status", "starts_at"], name="campaign_status_start_idx")]

    def __str__(self) -> str:
        return self.name


class CampaignVariant(models.Model):
    """One arm of an A/B test; members are split between arms by weight, deterministically."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="variants", verbose_name=_("campaign")
    )
    name = models.CharField(_("name"), max_length=32, help_text=_("e.g. A, B"))
    weight = models.PositiveSmallIntegerField(
        _("weight"), default=1, validators=[MinValueValidator(1)], help_text=_("Relative share of the audience.")
    )

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["campaign", "name"]
        constraints = [models.UniqueConstraint(fields=["campaign", "name"], name="campaignvariant_unique")]

    def __str__(self) -> str:
        return self.name


class CampaignTransition(models.Model):
    """One move of a campaign's status: who, when, from, to, and why. Append-only."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="transitions", verbose_name=_("campaign")
    )
    from_status = models.CharField(_("from"), max_length=20, choices=CampaignStatus)
    to_status = models.CharField(_("to"), max_length=20, choices=CampaignStatus)
    action = models.CharField(_("action"), max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
        help_text=_("Empty when the scheduler did it."),
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("campaign status change")
        verbose_name_plural = _("campaign status changes")
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["campaign", "at"], name="campaigntransition_time_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.from_status} → {self.to_status}"


class MessageTemplate(BaseModel):
    """The message of a campaign for one channel and language, in Django template syntax."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="templates", verbose_name=_("campaign")
    )
    variant = models.ForeignKey(
        CampaignVariant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="templates",
        verbose_name=_("variant"),
        help_text=_("Empty: the message of every variant without its own."),
    )
    step = models.CharField(
        _("journey step"),
        max_length=32,
        blank=True,
        help_text=_("Journeys: the step this message is for (e.g. day3); empty: every step without its own."),
    )
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel)
    language = models.CharField(_("language"), max_length=8, choices=MessageLanguage, default=MessageLanguage.CHINESE)
    subject = models.CharField(
        _("subject"), max_length=200, blank=True, help_text=_("E-mail and in-app messages only.")
    )
    body = models.TextField(
        _("body"),
        help_text=_(
            "Django template syntax, e.g. 亲爱的{{ member.name }}. Available: member.name, member.number, "
            "member.city, campaign.name, offer.points, offer.coupon, offer.multiplier. E-mail bodies are "
            "HTML; an SMS must stay within 70 characters once filled in."
        ),
    )

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "step", "channel", "language"],
                condition=Q(variant__isnull=True),
                name="messagetemplate_step_unique",
            ),
            models.UniqueConstraint(
                fields=["campaign", "variant", "step", "channel", "language"],
                condition=Q(variant__isnull=False),
                name="messagetemplate_variant_step_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} · {self.get_language_display()}"


class CampaignListMember(models.Model):
    """The resolved members of a campaign's uploaded list, written when the campaign is submitted."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "member"], name="campaignlistmember_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.member_id}"


class OutboxSettings(BaseModel):
    """Frequency caps, quiet hours and retry policy of the outbox; exactly one row."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    daily_cap = models.PositiveSmallIntegerField(
        _("promotional messages per day"),
        default=1,
        help_text=_(
            "At most this many promotional messages per member per day (Asia/Shanghai), across all "
            "channels. 8 ads a day is how groups lose their members."
        ),
    )
    weekly_cap = models.PositiveSmallIntegerField(
        _("promotional messages per week"),
        default=3,
        help_text=_("At most this many promotional messages per member in any 7 days ending on the sending day."),
    )
    quiet_start = models.TimeField(
        _("quiet hours start"), default=time(22, 0), help_text=_("Promotional messages due after this time wait.")
    )
    quiet_end = models.TimeField(
        _("quiet hours end"), default=time(8, 0), help_text=_("…until this time the next morning; none is dropped.")
    )
    max_attempts = models.PositiveSmallIntegerField(
        _("attempts per message"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("A message that still fails after this many tries is marked failed."),
    )
    retry_base_seconds = models.PositiveIntegerField(
        _("first retry after (seconds)"),
        default=60,
        help_text=_("Each further retry waits twice as long as the previous one."),
    )
    batch_size = models.PositiveIntegerField(
        _("messages per dispatch batch"), default=200, validators=[MinValueValidator(1)]
    )

    class Meta:
        verbose_name = _("outbox settings")
        verbose_name_plural = _("outbox settings")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="outboxsettings_singleton")]

    def __str__(self) -> str:
        return str(_("Outbox settings"))

    @classmethod
    def load(cls) -> "OutboxSettings":
        return cls.objects.get_or_create(pk=cls.SINGLETON_ID)[0]


class ChannelConfig(BaseModel):
    """How one channel reaches members: e-mail through Django's backend, SMS and WeCom through an
    HTTP gateway (signed webhook), in-app messages stored for the API."""

    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel, unique=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    url = models.URLField(_("gateway URL"), blank=True, help_text=_("SMS and WeCom: where messages are POSTed."))
    secret = models.CharField(
        _("signing secret"),
        max_length=128,
        blank=True,
        help_text=_("Signs requests to the gateway and checks its delivery receipts (HMAC-SHA256)."),
    )
    timeout_seconds = models.PositiveSmallIntegerField(_("timeout (seconds)"), default=10)
    from_email = models.CharField(_("sender"), max_length=200, blank=True, help_text=_("E-mail only."))
    fallback_channel = models.CharField(
        _("fallback channel"),
        max_length=16,
        choices=MessageChannel,
        blank=True,
        help_text=_(
            "When this channel cannot be used (a platform rule change, an outage), its waiting messages "
            "go out through this channel instead, once the fallback is switched on (by an alarm or by "
            "staff). Empty: messages wait until the channel works again."
        ),
    )
    fallback_active = models.BooleanField(
        _("fallback on"),
        default=False,
        help_text=_("While on, this channel's waiting messages are sent through the fallback channel."),
    )
    fallback_reason = models.CharField(_("why the fallback is on"), max_length=200, blank=True)
    fallback_since = models.DateTimeField(_("fallback on since"), null=True, blank=True)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["channel"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(fallback_channel=models.F("channel")), name="channelconfig_fallback_not_itself"
            ),
        ]

    def __str__(self) -> str:
        return self.get_channel_display()


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SKIPPED = "skipped", _("Skipped")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")
    OPENED = "opened", _("Opened")
    CLICKED = "clicked", _("Clicked")


class SkipReason(models.TextChoices):
    OPT_OUT = "opt_out", _("Opted out of the channel")
    NO_ADDRESS = "no_address", _("No address for the channel")
    LEFT_GROUP = "left_group", _("Left the group")
    DAILY_CAP = "daily_cap", _("Daily cap reached")
    WEEKLY_CAP = "weekly_cap", _("Weekly cap reached")
    HOLDOUT = "holdout", _("Control group (holdout)")
    CANCELLED = "cancelled", _("Campaign cancelled")
    ENDED = "ended", _("Campaign ended before it went out")


class Delivery(models.Model):
    """One message to one member: unique per (campaign, step, member)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, related_name="deliveries", verbose_name=_("campaign")
    )
    step = models.CharField(_("step"), max_length=32, default="main")
    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("member")
    )
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel)
    sent_via = models.CharField(
        _("sent through"),
        max_length=16,
        choices=MessageChannel,
        blank=True,
        help_text=_("The fallback channel the message went out through; empty when it went through its own."),
    )
    category = models.CharField(_("category"), max_length=16, choices=MessageCategory)
    variant = models.ForeignKey(
        CampaignVariant, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("variant")
    )
    holdout = models.BooleanField(_("control group"), default=False)
    journey_step = models.ForeignKey(
        "JourneyStep",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("journey step"),
        help_text=_("The journey step whose message and offer this is; empty for a one-off campaign."),
    )
    status = models.CharField(_("status"), max_length=16, choices=DeliveryStatus, default=DeliveryStatus.QUEUED)
    skip_reason = models.CharField(_("skip reason"), max_length=16, choices=SkipReason, blank=True)
    scheduled_for = models.DateTimeField(_("planned for"))
    next_attempt_at = models.DateTimeField(_("next attempt"))
    deferred = models.BooleanField(_("deferred by quiet hours"), default=False)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    # Set by the dispatcher that claimed the row; only that dispatcher records its outcome.
    claim_token = models.CharField(_("claim"), max_length=32, blank=True, editable=False)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)
    clicked_at = models.DateTimeField(_("clicked at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    provider_id = models.CharField(_("gateway message id"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("outbox")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "step", "member"], name="delivery_campaign_step_member_uniq"),
            models.CheckConstraint(
                condition=Q(status="skipped", skip_reason__gt="") | (~Q(status="skipped") & Q(skip_reason="")),
                name="delivery_skip_reason_iff_skipped",
            ),
        ]
        indexes = [
            # The dispatcher's claim: due queued rows in order.
            models.Index(fields=["next_attempt_at", "id"], name="delivery_due_idx", condition=Q(status="queued")),
            # Frequency caps: a member's promotional messages by planned time.
            models.Index(fields=["member", "scheduled_for"], name="delivery_member_time_idx"),
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status_idx"),
            models.Index(fields=["status", "claimed_at"], name="delivery_status_claimed_idx"),
            # The health dashboard's open rate: messages sent on a day (a range scan, not the outbox).
            models.Index(fields=["sent_at"], name="delivery_sent_idx", condition=Q(sent_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.step}/{self.member_id}"


class InAppMessage(models.Model):
    """An in-app message, stored for the member's app to read through the API."""

    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, related_name="in_app_message")
    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="in_app_messages", verbose_name=_("member")
    )
    subject = models.CharField(_("subject"), max_length=200, blank=True)
    body = models.TextField(_("body"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        verbose_name = _("in-app message")
        verbose_name_plural = _("in-app messages")
        indexes = [models.Index(fields=["member", "created_at"], name="inappmessage_member_time_idx")]

    def __str__(self) -> str:
        return self.subject or self.body[:30]


# Journeys and recall playbooks live in their own module; importing it registers their models.
from campaigns.models_journeys import *  # noqa: E402,F401,F403
