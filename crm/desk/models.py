"""Crisis tickets under the 3T SOP: Tell within 15 minutes, Time within 1 hour, Trust within 24 hours.

A ticket's three clocks start when it opens (a draft has none yet). Its deadlines come from the
SLA policy of its severity, copied onto the ticket when it opens so that a later policy change
never moves a running clock. Pausing stops the clocks; the paused time is added to every
deadline on resume. Every step is a TicketEvent on the ticket's timeline. The rules live in
crm.desk.sla (pure deadline arithmetic) and crm.desk.services.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from crm.core.models import BaseModel


class Severity(models.TextChoices):
    LOW = "low", _("Low")
    MEDIUM = "medium", _("Medium")
    HIGH = "high", _("High")
    CRITICAL = "critical", _("Critical")


SEVERITY_RANK = {value: rank for rank, value in enumerate(Severity.values)}


class TicketStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    OPEN = "open", pgettext_lazy("ticket status", "Open")
    PAUSED = "paused", _("Paused")
    CLOSED = "closed", _("Closed")


class TicketSource(models.TextChoices):
    STAFF = "staff", _("Staff")
    API = "api", _("Complaints API")
    ALARM = "alarm", _("Health alarm")


class AudienceKind(models.TextChoices):
    NONE = "", _("Not chosen yet")
    SEGMENT = "segment", _("A segment")
    LIST = "list", _("A list of member numbers")
    GROUP = "group", _("A community group")


class Clock(models.TextChoices):
    TELL = "tell", _("Tell")
    TIME = "time", _("Time")
    TRUST = "trust", _("Trust")


class CompensationKind(models.TextChoices):
    POINTS = "points", _("Points")
    COUPON = "coupon", _("Coupon")


class CompensationStatus(models.TextChoices):
    NONE = "", _("None requested")
    REQUESTED = "requested", _("Awaiting approval")
    RUNNING = "running", _("Being issued")
    DONE = "done", _("Delivered")
    FAILED = "failed", _("Failed")


class SlaPolicy(BaseModel):
    """The three deadlines of a severity; one row per severity, installed by a migration."""

    severity = models.CharField(_("severity"), max_length=16, choices=Severity, unique=True)
    tell_minutes = models.PositiveIntegerField(
        _("Tell within (minutes)"),
        default=15,
        validators=[MinValueValidator(1)],
        help_text=_("Time from opening until the announcement to the affected members must be sent."),
    )
    time_minutes = models.PositiveIntegerField(
        _("Time within (minutes)"),
        default=60,
        validators=[MinValueValidator(1)],
        help_text=_("Time from opening until the solution timetable must be published to them."),
    )
    trust_minutes = models.PositiveIntegerField(
        _("Trust within (minutes)"),
        default=24 * 60,
        validators=[MinValueValidator(1)],
        help_text=_("Time from opening until the promised compensation must be delivered."),
    )
    warn_percent = models.PositiveSmallIntegerField(
        # xgettext:no-python-format
        _("warn the owner at (% of the time used)"),
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text=_(
            "The owner is e-mailed when this share of a clock's time has passed without the step done; "
            "at the deadline the supervisors are e-mailed too and the breach is recorded."
        ),
    )

    class Meta:
        verbose_name = _("3T deadline policy")
        verbose_name_plural = _("3T deadline policies")

    def __str__(self) -> str:
        return str(self.get_severity_display())


class DeskSettings(BaseModel):
    """How the complaints API opens tickets; exactly one row, installed by a migration."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    api_min_severity = models.CharField(
        _("complaints API opens a ticket from severity"),
        max_length=16,
        choices=Severity,
        blank=True,
        default=Severity.HIGH,
        help_text=_(
            "A complaint the partner marks with this severity or higher opens a crisis ticket, or joins the "
            "open one of the same category; empty: the API never opens tickets."
        ),
    )
    api_attach_hours = models.PositiveIntegerField(
        _("join an open ticket opened within (hours)"),
        default=24,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Such a complaint joins an open API ticket of the same category opened this recently (its member "
            "becomes an affected member) instead of opening another one."
        ),
    )

    class Meta:
        verbose_name = _("crisis desk settings")
        verbose_name_plural = _("crisis desk settings")

    def __str__(self) -> str:
        return str(_("Crisis desk settings"))

    @classmethod
    def load(cls) -> "DeskSettings":
        return cls.objects.get_or_create(pk=cls.SINGLETON_ID)[0]


class Ticket(BaseModel):
    """A crisis: members complaining together. Changed only through crm.desk.services."""

    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity, default=Severity.HIGH)
    status = models.CharField(
        _("status"), max_length=16, choices=TicketStatus, default=TicketStatus.DRAFT, editable=False
    )
    source = models.CharField(_("opened by way of"), max_length=16, choices=TicketSource, default=TicketSource.STAFF)
    category = models.CharField(
        _("complaint category"), max_length=32, blank=True, help_text=_("For tickets the complaints API opened.")
    )
    # Affected members: one kind of audience, resolved into TicketMember rows when the ticket opens.
    audience_kind = models.CharField(
        _("affected members"), max_length=16, choices=AudienceKind, blank=True, default=AudienceKind.NONE
    )
    segment = models.ForeignKey(
        "members.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("segment"),
        help_text=_("The members of this segment, as last computed."),
    )
    member_numbers = models.TextField(
        _("member numbers"), blank=True, help_text=_("Member numbers separated by new lines, commas or spaces.")
    )
    group = models.CharField(
        _("community group"),
        max_length=120,
        blank=True,
        help_text=_("The members in this group now: joined it and not left it since."),
    )
    affected_count = models.PositiveIntegerField(_("affected members"), default=0, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("owner"),
    )
    watchers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", verbose_name=_("watchers")
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("opened by"),
        editable=False,
    )
    # The clocks: deadlines copied from the policy at opening; done_at when each step happened.
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True, editable=False)
    tell_minutes = models.PositiveIntegerField(_("Tell within (minutes)"), default=0, editable=False)
    time_minutes = models.PositiveIntegerField(_("Time within (minutes)"), default=0, editable=False)
    trust_minutes = models.PositiveIntegerField(_("Trust within (minutes)"), default=0, editable=False)
    # xgettext:no-python-format
    warn_percent = models.PositiveSmallIntegerField(_("warn at (%)"), default=80, editable=False)
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True, editable=False)
    paused_seconds = models.PositiveIntegerField(
        _("paused for (seconds)"), default=0, editable=False, help_text=_("Added to every deadline.")
    )
    tell_done_at = models.DateTimeField(_("announced at"), null=True, blank=True, editable=False)
    time_done_at = models.DateTimeField(_("timetable published at"), null=True, blank=True, editable=False)
    trust_done_at = models.DateTimeField(_("compensation delivered at"), null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True, editable=False)
    announcement = models.TextField(_("announcement"), blank=True, editable=False)
    timetable = models.TextField(_("solution timetable"), blank=True, editable=False)
    # The transactional notices in the outbox that carried the announcement and the timetable.
    tell_campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("announcement message"),
        editable=False,
    )
    time_campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("timetable message"),
        editable=False,
    )
    # Compensation: requested by an operator, approved by a supervisor, issued by a Celery task.
    compensation_kind = models.CharField(
        _("compensation"), max_length=16, choices=CompensationKind, blank=True, editable=False
    )
    compensation_points = models.PositiveIntegerField(_("points each"), default=0, editable=False)
    compensation_batch = models.ForeignKey(
        "loyalty.CouponBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("coupon batch"),
        editable=False,
    )
    compensation_status = models.CharField(
        _("compensation status"),
        max_length=16,
        choices=CompensationStatus,
        blank=True,
        default=CompensationStatus.NONE,
        editable=False,
    )
    compensation_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("compensation requested by"),
        editable=False,
    )
    compensation_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("compensation approved by"),
        editable=False,
    )
    compensation_issued = models.PositiveIntegerField(_("members compensated"), default=0, editable=False)

    class Meta:
        verbose_name = _("crisis ticket")
        verbose_name_plural = _("crisis tickets")
        ordering = ["-id"]
        permissions = [
            ("approve_compensation", _("Can approve a crisis ticket's compensation")),
            ("view_desk_reports", _("Can see the crisis desk reports")),
        ]
        indexes = [
            models.Index(fields=["status", "severity"], name="desk_ticket_status_idx"),
            models.Index(fields=["opened_at"], name="desk_ticket_opened_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=TicketStatus.DRAFT) | Q(opened_at__isnull=False), name="desk_ticket_open_has_time"
            ),
            models.CheckConstraint(
                condition=~Q(status=TicketStatus.PAUSED) | Q(paused_at__isnull=False),
                name="desk_ticket_paused_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def source_ref(self) -> str:
        """How the ticket's compensation entries name it in the points ledger."""
        return f"ticket:{self.pk}"


class TicketMember(models.Model):
    """An affected member of a ticket, fixed when the ticket opens (complaints may add more)."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="+", verbose_name=_("ticket"))
    member = models.ForeignKey("members.Member", on_delete=models.CASCADE, related_name="+", verbose_name=_("member"))
    added_at = models.DateTimeField(_("added at"), default=timezone.now)

    class Meta:
        verbose_name = _("affected member")
        verbose_name_plural = _("affected members")
        constraints = [models.UniqueConstraint(fields=["ticket", "member"], name="desk_ticketmember_unique")]
        indexes = [models.Index(fields=["member"], name="desk_ticketmember_member_idx")]

    def __str__(self) -> str:
        return f"{self.ticket_id}:{self.member_id}"


class EventKind(models.TextChoices):
    OPENED = "opened", _("Opened")
    DRAFTED = "drafted", _("Drafted")
    ANNOUNCED = "announced", _("Announcement sent")
    TIMETABLE = "timetable", _("Timetable published")
    COMPENSATION_REQUESTED = "comp_requested", _("Compensation requested")
    COMPENSATION_APPROVED = "comp_approved", _("Compensation approved")
    COMPENSATION_DELIVERED = "comp_delivered", _("Compensation delivered")
    COMPENSATION_FAILED = "comp_failed", _("Compensation failed")
    PAUSED = "paused", _("Paused")
    RESUMED = "resumed", _("Resumed")
    REOPENED = "reopened", _("Reopened")
    REASSIGNED = "reassigned", _("Reassigned")
    CLOSED = "closed", _("Closed")
    WARNED = "warned", _("Owner warned")
    BREACHED = "breached", _("Deadline missed")
    COMPLAINT = "complaint", _("Complaint joined")
    NOTE = "note", _("Note")


class TicketEvent(models.Model):
    """One step on a ticket's timeline: what, who and when. Append-only."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events", verbose_name=_("ticket"))
    kind = models.CharField(_("what"), max_length=16, choices=EventKind)
    clock = models.CharField(_("clock"), max_length=8, choices=Clock, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    note = models.TextField(_("note"), blank=True)
    data = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        verbose_name = _("timeline entry")
        verbose_name_plural = _("timeline")
        ordering = ["at", "id"]
        constraints = [
            # A warning and a breach are recorded once per clock, however often the beat job runs.
            models.UniqueConstraint(
                fields=["ticket", "kind", "clock"],
                condition=Q(kind__in=["warned", "breached"]),
                name="desk_ticketevent_escalation_once",
            ),
        ]
        indexes = [models.Index(fields=["kind", "at"], name="desk_ticketevent_kind_at_idx")]

    def __str__(self) -> str:
        return f"{self.ticket_id}: {self.get_kind_display()}"
