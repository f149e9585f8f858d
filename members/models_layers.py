"""Layers, lifecycle stages, churn scores and segments (issue 4).

Kept apart from members/models.py so the hot `Member` row stays narrow: every computed score
lives in `MemberScore`, one row per member, written set-based by members.services.layers.
members/models.py imports this module at its end so Django registers the models in the app.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.core.models import BaseModel
from members.models import Member, Tag

__all__ = [
    "AutomaticTag",
    "EventWindows",
    "LayerJobRun",
    "LayerSettings",
    "LayerSnapshot",
    "LifecycleStage",
    "MemberScore",
    "MemberScoreDraft",
    "Segment",
    "SegmentMember",
    "SegmentSnapshot",
    "StageTransition",
    "ValueLayer",
]


class ValueLayer(models.TextChoices):
    HIGH = "high", _("High-value loyal")
    POTENTIAL = "potential", _("Potential growth")
    EDGE = "edge", _("Edge")


class LifecycleStage(models.TextChoices):
    NEW = "new", _("New")
    ACTIVE = "active", _("Active")
    PAYING = "paying", _("Paying")
    AT_RISK = "at_risk", _("At risk")
    CHURNED = "churned", _("Churned")
    SILENT = "silent", _("Silent")


class LayerSettings(BaseModel):
    """The thresholds of segmentation and churn warning: one row, edited by staff in the admin.

    A data migration installs the row with DOMAIN.md's defaults; every run reads it afresh, so
    an edit takes effect at the next run.
    """

    rfm_window_days = models.PositiveIntegerField(
        _("RFM window (days)"),
        default=365,
        help_text=_(
            "Frequency and monetary count the purchases of this many days; a member who bought "
            "within it counts as paying."
        ),
    )
    score_buckets = models.PositiveSmallIntegerField(
        _("score buckets"),
        default=5,
        help_text=_(
            "R, F and M scores run from 1 to this number (5 = quintiles). Members with equal values get equal scores."
        ),
    )
    high_value_percent = models.PositiveSmallIntegerField(
        _("high-value layer (top %)"),
        default=10,
        help_text=_("Members in the top this-many percent by RFM score form the high-value loyal layer."),
    )
    potential_percent = models.PositiveSmallIntegerField(
        _("potential layer (next %)"),
        default=30,
        help_text=_(
            "The next this-many percent form the potential-growth layer; everyone else, and every member "
            "without a purchase in the window, is in the edge layer."
        ),
    )
    new_member_days = models.PositiveIntegerField(
        _("new member (days)"), default=30, help_text=_("Members who joined within this many days are new.")
    )
    at_risk_days = models.PositiveIntegerField(
        _("at risk after (days)"),
        default=15,
        help_text=_(
            "No activity of any kind (purchase, content, check-in, reading our messages…) for this many "
            "days puts a member at risk. Fast-moving goods often use 14."
        ),
    )
    churned_days = models.PositiveIntegerField(
        _("churned after (days)"), default=30, help_text=_("No activity of any kind for this many days: churned.")
    )
    silent_days = models.PositiveIntegerField(
        _("silent after (days)"),
        default=90,
        help_text=_(
            "Silent only when all three dimensions are quiet for this many days: no purchase, no campaign "
            "participation (check-ins, invites, UGC) and no following of the brand (reads, likes, "
            "comments, live streams)."
        ),
    )
    trend_days = models.PositiveIntegerField(
        _("purchase trend period (days)"),
        default=90,
        help_text=_(
            "The churn-risk score compares the purchase rate of the last this-many days with the rest of "
            "the RFM window."
        ),
    )
    purchase_drop_percent = models.PositiveSmallIntegerField(
        _("purchase drop warning (%)"),
        default=50,
        help_text=_("A purchase rate down by at least this much is a churn-risk reason."),
    )
    low_p_alive_percent = models.PositiveSmallIntegerField(
        _("low P(alive) warning (%)"),
        default=30,
        help_text=_("A probability of still being a customer below this is a churn-risk reason."),
    )
    high_spender_yuan = models.DecimalField(
        _("high spender from (yuan)"),
        max_digits=12,
        decimal_places=2,
        default=2000,
        help_text=_("Spend within the RFM window (net of refunds) that earns the automatic tag."),
    )
    live_lover_days = models.PositiveIntegerField(
        _("live-stream fan period (days)"), default=30, help_text=_("Period counted for the live-stream fan tag.")
    )
    live_lover_min_watches = models.PositiveIntegerField(
        _("live-stream fan from (watches)"),
        default=4,
        help_text=_("Live streams watched within the period that earn the live-stream fan tag."),
    )
    content_preference_days = models.PositiveIntegerField(
        _("content preference period (days)"),
        default=30,
        help_text=_("Interactions of this period decide a member's content preference tag."),
    )
    content_preference_min_events = models.PositiveIntegerField(
        _("content preference from (interactions)"),
        default=3,
        help_text=_("A member needs at least this many interactions in the period to get a preference tag."),
    )
    points_expiring_days = models.PositiveIntegerField(
        _("points expiring within (days)"),
        default=30,
        help_text=_(
            "Members with points expiring within this many days get the automatic tag and a churn-risk reason."
        ),
    )

    class Meta:
        verbose_name = _("layer settings")
        verbose_name_plural = _("layer settings")
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="layersettings_singleton"),
            models.CheckConstraint(
                condition=Q(score_buckets__gte=2, score_buckets__lte=10), name="layersettings_score_buckets_2_10"
            ),
            models.CheckConstraint(
                condition=Q(high_value_percent__lte=100) & Q(potential_percent__lte=100),
                name="layersettings_percent_lte_100",
            ),
        ]

    def __str__(self) -> str:
        return str(_("Layer settings"))

    def clean(self):
        from django.core.exceptions import ValidationError

        errors = {}
        if self.high_value_percent + self.potential_percent > 100:
            errors["potential_percent"] = _("The high-value and potential layers together cannot pass 100%.")
        if not self.at_risk_days <= self.churned_days <= self.silent_days:
            errors["churned_days"] = _("Use at risk ≤ churned ≤ silent days.")
        if self.trend_days >= self.rfm_window_days:
            errors["trend_days"] = _("The trend period must be shorter than the RFM window.")
        if errors:
            raise ValidationError(errors)

    @classmethod
    def load(cls) -> "LayerSettings":
        settings_row, _created = cls.objects.get_or_create(pk=1)
        return settings_row


class EventWindows(models.Model):
    """Where the windowed figures on Member start: one row, kept by members.services.windows.

    Ingest counts an event into a window's figures when it occurred at or after that window's
    start. A layer run moves each start to its own time minus the window's length, subtracting
    the events that leave (or adding those that re-enter); when a length changes, or before the
    figures were ever built, every member's figures are rebuilt from the events.
    """

    rfm_days = models.PositiveIntegerField(_("RFM window (days)"), null=True)
    trend_days = models.PositiveIntegerField(_("purchase trend period (days)"), null=True)
    live_days = models.PositiveIntegerField(_("live-stream fan period (days)"), null=True)
    preference_days = models.PositiveIntegerField(_("content preference period (days)"), null=True)
    rfm_start = models.DateTimeField(_("RFM window start"), null=True)
    trend_start = models.DateTimeField(_("trend period start"), null=True)
    live_start = models.DateTimeField(_("fan period start"), null=True)
    preference_start = models.DateTimeField(_("preference period start"), null=True)
    ready = models.BooleanField(
        _("ready"), default=False, help_text=_("The figures are exact for these starts (no rebuild under way).")
    )
    advanced_at = models.DateTimeField(_("moved forward at"), null=True)
    rebuilt_at = models.DateTimeField(_("rebuilt at"), null=True)
    rebuild_reason = models.CharField(_("reason of the last rebuild"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("event windows")
        verbose_name_plural = _("event windows")
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="eventwindows_singleton")]

    def __str__(self) -> str:
        return str(_("Event windows"))


class MemberScore(models.Model):
    """Computed RFM, layer, stage and churn figures of one member; rewritten by every run."""

    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, primary_key=True, related_name="score", verbose_name=_("member")
    )
    recency_days = models.PositiveIntegerField(
        _("recency (days)"), null=True, blank=True, help_text=_("Days since the last purchase; empty if never.")
    )
    frequency = models.PositiveIntegerField(_("frequency"), default=0, help_text=_("Orders in the RFM window."))
    monetary = models.DecimalField(
        _("monetary (yuan)"),
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text=_("Spend in the RFM window, net of refunds."),
    )
    recent_frequency = models.PositiveIntegerField(
        _("recent orders"), default=0, help_text=_("Orders in the purchase trend period.")
    )
    first_purchase_days = models.PositiveIntegerField(
        _("first purchase (days ago)"),
        null=True,
        blank=True,
        help_text=_("Days since the first purchase in the RFM window (the churn model's customer age)."),
    )
    r_score = models.PositiveSmallIntegerField(_("R score"), default=1)
    f_score = models.PositiveSmallIntegerField(_("F score"), default=1)
    m_score = models.PositiveSmallIntegerField(_("M score"), default=1)
    rfm_score = models.PositiveSmallIntegerField(_("RFM score"), default=3, help_text=_("R + F + M."))
    value_layer = models.CharField(_("value layer"), max_length=16, choices=ValueLayer, default=ValueLayer.EDGE)
    lifecycle_stage = models.CharField(_("lifecycle stage"), max_length=16, choices=LifecycleStage, blank=True)
    stage_since = models.DateTimeField(_("in this stage since"), null=True, blank=True)
    inactive_days = models.PositiveIntegerField(
        _("days without activity"),
        null=True,
        blank=True,
        help_text=_("Days since the last activity of any kind (or since joining)."),
    )
    p_alive = models.FloatField(
        _("P(alive)"),
        null=True,
        blank=True,
        help_text=_("Probability that the member is still a customer (BG/NBD); empty without purchases."),
    )
    expected_purchases_30d = models.FloatField(_("expected purchases, 30 days"), null=True, blank=True)
    expected_purchases_90d = models.FloatField(_("expected purchases, 90 days"), null=True, blank=True)
    churn_risk = models.PositiveSmallIntegerField(_("churn risk"), default=0, help_text=_("0 (none) to 100."))
    churn_reasons = models.JSONField(_("churn-risk reasons"), default=dict, blank=True)
    computed_at = models.DateTimeField(_("computed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("member score")
        verbose_name_plural = _("member scores")
        indexes = [
            # Segment filters and the admin's filters; each ends with the member so ranges stay cheap.
            models.Index(fields=["value_layer", "member"], name="memberscore_layer_idx"),
            models.Index(fields=["lifecycle_stage", "member"], name="memberscore_stage_idx"),
            models.Index(fields=["rfm_score", "member"], name="memberscore_rfm_idx"),
            models.Index(fields=["churn_risk", "member"], name="memberscore_risk_idx"),
            # No index on p_alive: it moves a little for every buyer every night, and an index
            # on it would make each of those rewrites a non-HOT update that inserts into every
            # index (5x the cost of the nightly publish, docs/PERFORMANCE.md). The table is
            # kept half empty (fillfactor 50, migration 0010) so the rewrites stay on their page.
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.value_layer}/{self.lifecycle_stage}"

    @property
    def churn_reasons_text(self) -> str:
        from members.services.layers import churn_reasons_text

        return churn_reasons_text(self.churn_reasons)


class MemberScoreDraft(models.Model):
    """Scores being computed by a run, before they are published to MemberScore in one transaction.

    A run fills its drafts range by range (committing as it goes, so its progress shows), then
    publishes them all at once: a run that fails or is superseded halfway leaves the published
    scores as they were, and two runs never write into each other's drafts. A draft holds the
    raw figures and the stage; publishing computes the scores, layer and churn figures from them
    as it writes the score rows (members/services/layers.py).
    """

    run_id = models.BigIntegerField(_("run"))
    member_id = models.BigIntegerField(_("member"))
    recency_days = models.IntegerField(null=True)
    frequency = models.IntegerField(default=0)
    monetary = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    recent_frequency = models.IntegerField(default=0)
    first_purchase_days = models.IntegerField(null=True)
    inactive_days = models.IntegerField(null=True)
    lifecycle_stage = models.CharField(max_length=16, blank=True)
    live_watches = models.IntegerField(default=0)
    top_interaction = models.CharField(max_length=32, blank=True)
    points_expiring = models.BooleanField(default=False)
    # For the birthday tag: the drafts alone decide the automatic tags, without Member.
    birthday_month = models.SmallIntegerField(null=True)

    class Meta:
        verbose_name = _("member score draft")
        verbose_name_plural = _("member score drafts")
        constraints = [models.UniqueConstraint(fields=["run_id", "member_id"], name="memberscoredraft_run_member_uniq")]

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.member_id}"


class StageTransition(models.Model):
    """A member moved from one lifecycle stage to another; appended by the recompute runs."""

    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="stage_transitions", verbose_name=_("member")
    )
    from_stage = models.CharField(_("from"), max_length=16, choices=LifecycleStage)
    to_stage = models.CharField(_("to"), max_length=16, choices=LifecycleStage)
    at = models.DateTimeField(_("at"), db_index=True)

    class Meta:
        verbose_name = _("stage change")
        verbose_name_plural = _("stage changes")
        indexes = [
            models.Index(fields=["member", "at"], name="stagetransition_member_idx"),
            models.Index(fields=["to_stage", "at"], name="stagetransition_to_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_stage} → {self.to_stage}"


class LayerSnapshot(models.Model):
    """How many members were in each value layer and stage on a day, for the charts."""

    class Dimension(models.TextChoices):
        LAYER = "layer", _("Value layer")
        STAGE = "stage", _("Lifecycle stage")

    day = models.DateField(_("day"))
    dimension = models.CharField(_("dimension"), max_length=8, choices=Dimension)
    value = models.CharField(_("value"), max_length=16)
    members = models.PositiveIntegerField(_("members"), default=0)

    class Meta:
        verbose_name = _("layer and stage chart")
        verbose_name_plural = _("layer and stage charts")
        constraints = [
            models.UniqueConstraint(fields=["day", "dimension", "value"], name="layersnapshot_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.dimension}={self.value}: {self.members}"


class AutomaticTag(models.Model):
    """Links an automatic rule to the Tag it sets, so staff may rename the tag freely."""

    class Rule(models.TextChoices):
        HIGH_SPENDER = "high_spender", _("High spender")
        BIRTHDAY_MONTH = "birthday_month", _("Birthday this month")
        LIVE_LOVER = "live_lover", _("Likes live streams")
        POINTS_EXPIRING = "points_expiring", _("Points expiring soon")
        PREFERS = "prefers", _("Content preference")

    rule = models.CharField(_("rule"), max_length=32, choices=Rule)
    # For the content-preference rule: the interaction sub-kind (InteractionKind).
    argument = models.CharField(_("argument"), max_length=32, blank=True)
    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, related_name="automatic_rule", verbose_name=_("tag"))

    class Meta:
        verbose_name = _("automatic tag")
        verbose_name_plural = _("automatic tags")
        constraints = [models.UniqueConstraint(fields=["rule", "argument"], name="automatictag_rule_unique")]

    def __str__(self) -> str:
        return f"{self.get_rule_display()} {self.argument}".strip()


class LayerJobRun(models.Model):
    """One run of the layer recompute (or a segment refresh): what it did, and how far it is."""

    class Kind(models.TextChoices):
        FULL = "full", _("Full recompute")
        INCREMENTAL = "incremental", _("Incremental recompute")
        SEGMENTS = "segments", _("Segment refresh")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Done")
        FAILED = "failed", _("Failed")
        SUPERSEDED = "superseded", _("Superseded by a newer run")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind)
    status = models.CharField(_("status"), max_length=16, choices=Status, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    step = models.CharField(_("step"), max_length=64, blank=True)
    total = models.PositiveIntegerField(_("work units"), default=0)
    done = models.PositiveIntegerField(_("work units done"), default=0)
    rows = models.PositiveIntegerField(_("rows written"), default=0)
    error = models.TextField(_("error"), blank=True)
    # Events recorded up to this moment are reflected in the results (the incremental run's watermark).
    events_until = models.DateTimeField(_("events up to"), null=True, blank=True)
    last_event_id = models.BigIntegerField(_("last event id"), null=True, blank=True, editable=False)
    cut_points = models.JSONField(
        _("score cut points"),
        default=dict,
        blank=True,
        help_text=_("Lowest value of each score, kept so incremental runs score alike."),
    )
    model_params = models.JSONField(_("churn model parameters"), default=dict, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("started by")
    )

    class Meta:
        verbose_name = _("layer job run")
        verbose_name_plural = _("layer job runs")
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["kind", "status", "started_at"], name="layerjobrun_kind_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        return min(100, round(100 * self.done / self.total)) if self.total else 0


class Segment(BaseModel):
    """A saved audience: rules over members, with materialized membership. Campaigns target these."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    rules = models.JSONField(
        _("rules"),
        default=dict,
        help_text=_("Conditions combined with AND/OR; edited with the rule editor."),
    )
    auto_refresh = models.BooleanField(
        _("refresh on schedule"),
        default=True,
        help_text=_("Recompute the membership after every layer recompute."),
    )
    member_count = models.PositiveIntegerField(_("members"), null=True, blank=True, editable=False)
    last_computed_at = models.DateTimeField(_("last computed"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        verbose_name=_("created by"),
        related_name="+",
    )

    members = models.ManyToManyField(
        Member, through="SegmentMember", related_name="segments", verbose_name=_("members")
    )

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]
        permissions = [("refresh_segment", _("Can recompute a segment's members"))]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, verbose_name=_("segment"))
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", verbose_name=_("member"))
    added_at = models.DateTimeField(_("added at"))

    class Meta:
        verbose_name = _("segment member")
        verbose_name_plural = _("segment members")
        constraints = [models.UniqueConstraint(fields=["segment", "member"], name="segmentmember_unique")]
        indexes = [models.Index(fields=["member"], name="segmentmember_member_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.member_id}"


class SegmentSnapshot(models.Model):
    """The size of a segment each time its membership was computed."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots", verbose_name=_("segment"))
    computed_at = models.DateTimeField(_("computed at"))
    members = models.PositiveIntegerField(_("members"))
    added = models.PositiveIntegerField(_("added"))
    removed = models.PositiveIntegerField(_("removed"))

    class Meta:
        verbose_name = _("segment size")
        verbose_name_plural = _("segment size history")
        ordering = ["-computed_at"]
        indexes = [models.Index(fields=["segment", "computed_at"], name="segmentsnapshot_seg_time_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.computed_at:%Y-%m-%d %H:%M}: {self.members}"
