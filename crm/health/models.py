"""Community health: the targets and alarm limits staff set, daily snapshots, alarms and tasks."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel

PERCENT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


def _percent(verbose_name, default, help_text):
    return models.DecimalField(
        verbose_name,
        max_digits=5,
        decimal_places=2,
        default=Decimal(default),
        validators=PERCENT,
        help_text=help_text,
    )


class HealthSettings(BaseModel):
    """Targets for the dashboard and limits for the alarms; exactly one row, installed by a migration."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)

    # Targets: lines drawn on the charts; a day below (or above, for exits) is shown in red.
    window_days = models.PositiveSmallIntegerField(
        _("measuring window (days)"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text=_(
            "Activity rate, content open rate and group exit rate are measured over this many days "
            "up to the snapshot day."
        ),
    )
    activity_rate_target = _percent(
        _("activity rate target (%)"),
        "15",
        _(
            "Share of members who interacted (posted in a group, checked in, read, liked, shared…) within the "
            "measuring window. The playbook's healthy community is at least 15%."
        ),
    )
    ltv_multiple_target = models.DecimalField(
        _("LTV target (× average order value)"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("3"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_(
            "Member lifetime value (spend per paying member) divided by the average order value. "
            "The playbook aims for at least 3."
        ),
    )
    open_rate_target = _percent(
        _("content open rate target (%)"),
        "10",
        _(
            "Share of messages sent within the measuring window that members opened. The playbook aims for "
            "at least 10%."
        ),
    )
    streak_share_target = _percent(
        _("7-day check-in streak target (%)"),
        "20",
        _(
            "Share of the members who checked in during the last 7 days that checked in on every one of "
            "them. The playbook names the indicator without a number; set your own."
        ),
    )
    exit_rate_target = _percent(
        _("group exit rate target (%)"),
        "5",
        _(
            "Group exits within the measuring window per group member; lower is better. A well-run "
            "community keeps it under 5%."
        ),
    )

    # Alarm: quiet groups → topic day.
    group_messages_min = models.PositiveIntegerField(
        _("group messages per day, at least"),
        default=50,
        help_text=_(
            "Fewer group messages than this a day, for the number of days below, suggests a topic "
            "day (a task on the dashboard)."
        ),
    )
    group_messages_days = models.PositiveSmallIntegerField(
        _("quiet days in a row"),
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(30)],
        help_text=_("How many whole days in a row under the limit above raise the topic-day alarm."),
    )
    # Alarm: complaints up → alert the service lead, crisis ticket draft.
    complaint_period_days = models.PositiveSmallIntegerField(
        _("complaint period (days)"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text=_("Complaints of the last this many days are compared with the same number of days before."),
    )
    complaint_increase_percent = models.PositiveSmallIntegerField(
        _("complaint increase (%)"),
        default=30,
        help_text=_(
            "Complaints up by this much or more on the previous period alert the service lead and "
            "open a crisis ticket draft."
        ),
    )
    complaint_min_count = models.PositiveIntegerField(
        _("complaints at least"),
        default=5,
        help_text=_(
            "The complaint alarm fires only with at least this many complaints in the period, so that "
            "2 instead of 1 is not an alarm."
        ),
    )
    service_lead = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("service lead"),
        help_text=_("Gets an e-mail when an alarm fires (needs an e-mail address on the staff account)."),
    )
    # Alarm: group exits → pause promotions.
    exit_rate_max = _percent(
        _("group exit rate alarm (%)"),
        "8",
        _(
            "Group exits within the measuring window above this share of group members pause the running "
            "promotional campaigns (resumed when the alarm is resolved) and alert the service lead."
        ),
    )
    # Alarm: a channel's gateway failing → fallback channel.
    channel_window_minutes = models.PositiveSmallIntegerField(
        _("channel check window (minutes)"),
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text=_("Send attempts of the last this many minutes are looked at for each channel."),
    )
    channel_failure_percent = _percent(
        _("channel failure alarm (%)"),
        "50",
        _(
            "When at least this share of a channel's send attempts in the window failed, its messages "
            "switch to the fallback channel set on the channel (cleared when the alarm is resolved)."
        ),
    )
    channel_min_attempts = models.PositiveIntegerField(
        _("channel attempts at least"),
        default=20,
        validators=[MinValueValidator(1)],
        help_text=_(
            "The channel alarm looks at a channel only with at least this many send attempts in the "
            "window, so one timeout is not an outage."
        ),
    )

    class Meta:
        verbose_name = _("health settings")
        verbose_name_plural = _("health settings")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="healthsettings_singleton")]

    def __str__(self) -> str:
        return str(_("Health targets and alarm limits"))

    @classmethod
    def load(cls) -> "HealthSettings":
        # The migration installs the row; get_or_create also covers a flushed test database.
        return cls.objects.get_or_create(pk=cls.SINGLETON_ID)[0]


def _rate(verbose_name):
    # NULL when the denominator was zero: "no data" is not 0%.
    return models.DecimalField(verbose_name, max_digits=7, decimal_places=2, null=True, blank=True)


class HealthSnapshot(models.Model):
    """The indicators of one local day, computed once a night from the behaviour log, members,
    the outbox, points and the desk. Recomputing a day replaces its row."""

    day = models.DateField(_("day"), unique=True)
    members = models.PositiveIntegerField(_("members"), default=0)
    active_members = models.PositiveIntegerField(_("members who interacted"), default=0)
    activity_rate = _rate(_("activity rate (%)"))
    ltv = models.DecimalField(_("LTV (yuan)"), max_digits=14, decimal_places=2, null=True, blank=True)
    average_order_value = models.DecimalField(
        _("average order value (yuan)"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    ltv_multiple = _rate(_("LTV ÷ average order value"))
    messages_sent = models.PositiveIntegerField(_("messages sent"), default=0)
    messages_opened = models.PositiveIntegerField(_("messages opened"), default=0)
    open_rate = _rate(_("content open rate (%)"))
    check_in_members = models.PositiveIntegerField(_("members who checked in"), default=0)
    streak_members = models.PositiveIntegerField(_("members with a 7-day streak"), default=0)
    streak_share = _rate(_("7-day streak share (%)"))
    group_members = models.PositiveIntegerField(_("group members"), default=0)
    group_exits = models.PositiveIntegerField(_("group exits"), default=0)
    exit_rate = _rate(_("group exit rate (%)"))
    group_messages = models.PositiveIntegerField(_("group messages"), default=0)
    complaints = models.PositiveIntegerField(_("complaints"), default=0)
    # Only for the day the nightly job ran after: balances have no history to rebuild older days from.
    points_liability = models.BigIntegerField(_("points liability (points)"), null=True, blank=True)
    points_liability_yuan = models.DecimalField(
        _("points liability (yuan)"), max_digits=16, decimal_places=2, null=True, blank=True
    )
    sla_breaches = models.PositiveIntegerField(_("SLA breaches"), null=True, blank=True)
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        verbose_name = _("daily health snapshot")
        verbose_name_plural = _("daily health snapshots")
        ordering = ["-day"]

    def __str__(self) -> str:
        return self.day.isoformat()


class AlarmKind(models.TextChoices):
    QUIET_GROUPS = "quiet_groups", _("Quiet groups: topic day")
    COMPLAINTS = "complaints", _("Complaints rising")
    GROUP_EXITS = "group_exits", _("Group exits high")
    CHANNEL_FAILING = "channel_failing", _("Channel failing")


class Alarm(models.Model):
    """One episode of an alarm condition: raised once when it starts, what it did, when the
    condition cleared, and who acknowledged and resolved it.

    At most one episode per (kind, subject) is open (not cleared); the checks update it instead
    of raising it again. Resolving undoes what can be undone (resumes paused campaigns, clears a
    channel fallback)."""

    kind = models.CharField(_("alarm"), max_length=20, choices=AlarmKind)
    subject = models.CharField(
        _("subject"), max_length=32, blank=True, help_text=_("What the alarm is about, e.g. the failing channel.")
    )
    raised_at = models.DateTimeField(_("raised at"), db_index=True)
    last_seen_at = models.DateTimeField(_("condition last seen"))
    cleared_at = models.DateTimeField(
        _("condition cleared at"),
        null=True,
        blank=True,
        help_text=_("When a check found the condition over. The same condition later raises a new alarm."),
    )
    measured = models.JSONField(_("measured"), default=dict, help_text=_("The figures and limits that raised it."))
    actions = models.JSONField(_("what it did"), default=list)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("acknowledged by"),
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("resolved by"),
    )
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("alarm")
        verbose_name_plural = _("alarms")
        ordering = ["-raised_at", "-id"]
        permissions = [("acknowledge_alarm", _("Can acknowledge and resolve alarms"))]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"], condition=Q(cleared_at__isnull=True), name="alarm_one_open_episode"
            ),
            models.CheckConstraint(
                condition=Q(resolved_at__isnull=True) | Q(acknowledged_at__isnull=False),
                name="alarm_resolved_is_acknowledged",
            ),
        ]
        indexes = [
            models.Index(
                fields=["resolved_at", "raised_at"], name="alarm_unresolved_idx", condition=Q(resolved_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        label = self.get_kind_display()
        if not self.subject:
            return str(label)
        from campaigns.models import MessageChannel

        return f"{label} · {dict(MessageChannel.choices).get(self.subject, self.subject)}"

    def action_lines(self) -> list[str]:
        """What the alarm did, as sentences in the reader's language."""
        return [alarm_action_text(entry) for entry in self.actions]


def alarm_action_text(entry: dict) -> str:
    from django.utils.translation import gettext

    from campaigns.models import MessageChannel

    channels = dict(MessageChannel.choices)
    action = entry.get("action")
    names = {key: str(channels.get(entry.get(key), entry.get(key))) for key in ("channel", "fallback")}
    ids = ", ".join(f"#{pk}" for pk in entry.get("campaigns", [])) or gettext("none")
    texts = {
        "task_created": lambda: gettext("Suggested a topic day (task #%(task)s).") % entry,
        "ticket_draft": lambda: gettext("Opened a crisis ticket draft #%(ticket)s.") % entry,
        "alerted": lambda: gettext("Alerted the service lead by e-mail."),
        "alert_skipped": lambda: gettext("No alert sent: no service lead with an e-mail address is set."),
        "campaigns_paused": lambda: gettext("Paused running promotional campaigns: %(ids)s.") % {"ids": ids},
        "campaigns_resumed": lambda: gettext("Resumed campaigns: %(ids)s.") % {"ids": ids},
        "fallback_on": lambda: gettext("Switched %(channel)s to the fallback channel %(fallback)s.") % names,
        "no_fallback": lambda: gettext("No fallback channel is set for %(channel)s; nothing switched.") % names,
        "fallback_off": lambda: gettext("Switched %(channel)s back from its fallback.") % names,
    }
    text = texts.get(action)
    return text() if text else str(action)


class DashboardTask(models.Model):
    """A suggestion for the operations team, shown on the dashboard until someone closes it."""

    class Kind(models.TextChoices):
        TOPIC_DAY = "topic_day", _("Run a topic day in the community groups")

    class Status(models.TextChoices):
        OPEN = "open", _("To do")
        DONE = "done", _("Done")
        DISMISSED = "dismissed", _("Dismissed")

    kind = models.CharField(_("task"), max_length=20, choices=Kind)
    alarm = models.ForeignKey(
        Alarm, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks", verbose_name=_("alarm")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status, default=Status.OPEN)
    created_at = models.DateTimeField(_("created at"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("closed by"),
    )

    class Meta:
        verbose_name = _("dashboard task")
        verbose_name_plural = _("dashboard tasks")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="dashboardtask_status_idx")]

    def __str__(self) -> str:
        return str(self.get_kind_display())

    @property
    def advice(self) -> str:
        """What to do, in the reader's language."""
        return str(TASK_ADVICE[self.kind])


TASK_ADVICE = {
    DashboardTask.Kind.TOPIC_DAY: _(
        "The groups have been quiet for several days. Pick a theme members care about (a product story, a "
        "how-to, a poll or a guess-the-price game), announce it the day before, and keep the conversation "
        "going with a small reward for the best posts."
    ),
}
