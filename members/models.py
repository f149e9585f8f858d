from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from phonenumber_field.modelfields import PhoneNumberField

from crm.core.models import BaseModel


class Gender(models.TextChoices):
    UNKNOWN = "unknown", _("Unknown")
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")


class Channel(models.TextChoices):
    """Where a member joined the private pool."""

    WECOM = "wecom", _("WeCom")
    COMMUNITY = "community", _("Community group")
    MINI_PROGRAM = "mini_program", _("Mini-program")
    APP = "app", _("App")
    STORE = "store", _("Store / POS")
    ONLINE_SHOP = "online_shop", _("Online shop")
    REFERRAL = "referral", _("Referral")
    OTHER = "other", _("Other")


def _window_count(verbose_name) -> models.IntegerField:
    """A windowed count on Member (below): kept by ingest and the layer runs, never edited."""
    return models.IntegerField(verbose_name, default=0, db_default=0, editable=False)


class Member(BaseModel):
    # NULL, not "": members without a number must not collide under member_external_id_unique.
    external_id = models.CharField(  # noqa: DJ001
        _("member number"),
        max_length=64,
        null=True,
        blank=True,
        help_text=_("The partner system's id for this member. Imports and the API match members on it."),
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    phone = PhoneNumberField(
        _("phone"),
        null=True,
        blank=True,
        help_text=_("Stored as +86… (E.164). Imports without a member number match members on it."),
    )
    email = models.EmailField(_("e-mail"), blank=True)
    gender = models.CharField(_("gender"), max_length=16, choices=Gender, default=Gender.UNKNOWN)
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    city = models.CharField(_("city"), max_length=64, blank=True)
    channel = models.CharField(_("channel"), max_length=32, choices=Channel, default=Channel.OTHER)
    joined_at = models.DateTimeField(_("joined at"), default=timezone.now)
    sms_opt_out = models.BooleanField(_("no SMS"), default=False, help_text=_("The member asked not to get SMS."))
    email_opt_out = models.BooleanField(
        _("no e-mail"), default=False, help_text=_("The member asked not to get e-mail.")
    )
    wecom_opt_out = models.BooleanField(
        _("no WeCom messages"), default=False, help_text=_("The member asked not to get WeCom messages.")
    )
    notes = models.TextField(_("notes"), blank=True)

    # Rollups of the behaviour log, kept current on ingest and rebuilt exactly every night.
    last_active_at = models.DateTimeField(_("last active"), null=True, blank=True, editable=False)
    last_interaction_at = models.DateTimeField(_("last interaction"), null=True, blank=True, editable=False)
    last_purchase_at = models.DateTimeField(_("last purchase"), null=True, blank=True, editable=False)
    # Not indexed (ingest writes it); segment rules "checked in within N days" read it.
    last_check_in_at = models.DateTimeField(_("last check-in"), null=True, blank=True, editable=False)
    orders_count = models.PositiveIntegerField(_("orders"), default=0, editable=False)
    total_spent = models.DecimalField(
        _("total spent (yuan)"), max_digits=14, decimal_places=2, default=0, editable=False,
        help_text=_("Purchases minus refunds."),
    )

    # Windowed figures (issue 4), kept current at ingest by the same UPDATE as the rollups above:
    # the events since the starts recorded in EventWindows (members/services/windows.py moves
    # the starts forward, subtracting the events that leave; the nightly rollup rebuild
    # recomputes them exactly). Never indexed: ingest writes them, nothing filters on them. Database
    # defaults too, so that set-based INSERTs naming only the member's own columns keep working.
    window_orders = _window_count(_("orders in the RFM window"))
    window_spent = models.DecimalField(
        _("spend in the RFM window (yuan)"), max_digits=14, decimal_places=2, default=0, db_default=0, editable=False
    )
    window_first_purchase_at = models.DateTimeField(
        _("first purchase in the RFM window"), null=True, blank=True, editable=False
    )
    trend_orders = _window_count(_("orders in the trend period"))
    live_watches = _window_count(_("live streams watched in the fan period"))
    interactions_view = _window_count(_("views in the preference period"))
    interactions_like = _window_count(_("likes in the preference period"))
    interactions_comment = _window_count(_("comments in the preference period"))
    interactions_share = _window_count(_("shares in the preference period"))
    interactions_live_watch = _window_count(_("live-stream watches in the preference period"))
    interactions_article_read = _window_count(_("article reads in the preference period"))

    tags = models.ManyToManyField("Tag", through="MemberTag", related_name="members", verbose_name=_("tags"))

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        permissions = [
            ("view_full_phone", _("Can see full phone numbers")),
            ("import_members", _("Can import members")),
            ("import_events", _("Can import behaviour events")),
            ("export_members", _("Can export members")),
        ]
        indexes = [
            # Admin filters and sorts; each ends with id so that ORDER BY x, id uses the index.
            models.Index(fields=["joined_at", "id"], name="member_joined_idx"),
            models.Index(fields=["last_active_at", "id"], name="member_last_active_idx"),
            models.Index(fields=["last_purchase_at", "id"], name="member_last_purchase_idx"),
            models.Index(fields=["total_spent", "id"], name="member_total_spent_idx"),
            models.Index(fields=["orders_count", "id"], name="member_orders_idx"),
            models.Index(fields=["channel", "id"], name="member_channel_idx"),
            models.Index(fields=["city", "id"], name="member_city_idx"),
            models.Index(fields=["name"], name="member_name_prefix_idx", opclasses=["varchar_pattern_ops"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(orders_count__gte=0), name="member_orders_count_gte_0"),
            # Constraints rather than unique=True: on PostgreSQL unique=True on a text column also
            # builds a second, LIKE-pattern index, which nothing here queries and every write pays.
            models.UniqueConstraint(fields=["external_id"], name="member_external_id_unique"),
            models.UniqueConstraint(fields=["phone"], name="member_phone_unique"),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id or f"#{self.pk}"


class TagKind(models.TextChoices):
    MANUAL = "manual", _("Manual")
    AUTOMATIC = "automatic", _("Automatic")


class Tag(BaseModel):
    name = models.CharField(_("name"), max_length=64, unique=True)
    kind = models.CharField(
        _("kind"),
        max_length=16,
        choices=TagKind,
        default=TagKind.MANUAL,
        help_text=_("Automatic tags are recomputed from behaviour; manual tags are set by staff."),
    )
    description = models.CharField(_("description"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MemberTag(models.Model):
    member = models.ForeignKey(Member, on_delete=models.CASCADE, verbose_name=_("member"))
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, verbose_name=_("tag"))
    created_at = models.DateTimeField(_("tagged at"), auto_now_add=True)

    class Meta:
        verbose_name = _("member tag")
        verbose_name_plural = _("member tags")
        constraints = [models.UniqueConstraint(fields=["member", "tag"], name="membertag_unique")]
        indexes = [models.Index(fields=["tag", "member"], name="membertag_tag_member_idx")]

    def __str__(self) -> str:
        return f"{self.member_id}:{self.tag_id}"


class EventKind(models.TextChoices):
    PURCHASE = "purchase", _("Purchase")
    REFUND = "refund", _("Refund")
    CHECK_IN = "check_in", _("Check-in")
    INTERACTION = "interaction", _("Interaction")
    INVITE = "invite", _("Invite")
    UGC = "ugc", _("UGC post")
    COMPLAINT = "complaint", _("Complaint")
    GROUP_JOIN = "group_join", _("Joined group")
    GROUP_EXIT = "group_exit", _("Left group")
    GROUP_MESSAGE = "group_message", _("Group message")
    MESSAGE_READ = "message_read", _("Read a message")


class InteractionKind(models.TextChoices):
    """The sub-kind of an `interaction` event."""

    VIEW = "view", _("View")
    LIKE = "like", _("Like")
    COMMENT = "comment", _("Comment")
    SHARE = "share", _("Share")
    LIVE_WATCH = "live_watch", _("Live stream watch")
    ARTICLE_READ = "article_read", _("Article read")


# Every kind but leaving a group shows the member is alive.
ACTIVE_KINDS = frozenset(EventKind.values) - {EventKind.GROUP_EXIT}
# Engagement without buying: content, check-ins, invites, UGC, reading our messages. A member who
# buys less but engages daily is not drifting (DOMAIN.md, churn warning).
INTERACTION_KINDS = frozenset(
    {
        EventKind.CHECK_IN,
        EventKind.INTERACTION,
        EventKind.INVITE,
        EventKind.UGC,
        EventKind.MESSAGE_READ,
        EventKind.GROUP_MESSAGE,
    }
)


class MemberEvent(models.Model):
    """One fact from the behaviour log. Append-only; unique on (source, external_id)."""

    # No index of its own: memberevent_member_time_idx (member, occurred_at) serves every lookup
    # by member, and one index fewer is one write fewer per ingested event.
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="events", verbose_name=_("member"), db_index=False
    )
    kind = models.CharField(_("kind"), max_length=16, choices=EventKind)
    sub_kind = models.CharField(
        _("sub-kind"),
        max_length=32,
        blank=True,
        help_text=_("For interactions: view, like, comment, share, live_watch, article_read."),
    )
    amount = models.DecimalField(
        _("amount (yuan)"), max_digits=12, decimal_places=2, null=True, blank=True,
        help_text=_("For purchases and refunds."),
    )
    occurred_at = models.DateTimeField(_("occurred at"))
    source = models.CharField(
        _("source"), max_length=32, help_text=_("The system that reported it, e.g. shop, pos, wecom.")
    )
    external_id = models.CharField(
        _("event id"),
        max_length=64,
        help_text=_("The id in the source system; a replay with the same id is recorded once."),
    )
    payload = models.JSONField(_("details"), default=dict, blank=True)
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("behaviour event")
        verbose_name_plural = _("behaviour events")
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="memberevent_source_external_id_uniq"),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="memberevent_amount_gte_0"
            ),
        ]
        indexes = [
            models.Index(fields=["member", "occurred_at"], name="memberevent_member_time_idx"),
            models.Index(fields=["kind", "occurred_at"], name="memberevent_kind_time_idx"),
            models.Index(fields=["occurred_at"], name="memberevent_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.occurred_at:%Y-%m-%d %H:%M}"


def import_upload_path(instance: "ImportJob", filename: str) -> str:
    return f"imports/{timezone.now():%Y/%m}/{filename}"


class ImportJob(BaseModel):
    """One uploaded file being imported: its options, progress and outcome, kept for later."""

    class Target(models.TextChoices):
        MEMBERS = "members", _("Members")
        EVENTS = "events", _("Behaviour events")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Done")
        REJECTED = "rejected", _("Rejected: invalid rows")
        FAILED = "failed", _("Failed")

    target = models.CharField(_("what to import"), max_length=16, choices=Target)
    file = models.FileField(
        _("file"), upload_to=import_upload_path, help_text=_("CSV or XLSX, headers in Chinese or English.")
    )
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    dry_run = models.BooleanField(_("dry run"), default=False, help_text=_("Check the file and report; write nothing."))
    skip_invalid = models.BooleanField(
        _("skip invalid rows"),
        default=False,
        help_text=_("Import the valid rows and return the invalid ones as a file to correct. "
                    "Otherwise nothing is written when any row is invalid."),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status, default=Status.PENDING)
    total_rows = models.PositiveIntegerField(_("rows"), default=0)
    processed_rows = models.PositiveIntegerField(_("rows processed"), default=0)
    created_count = models.PositiveIntegerField(_("created"), default=0)
    updated_count = models.PositiveIntegerField(_("updated"), default=0)
    unchanged_count = models.PositiveIntegerField(
        _("unchanged"), default=0, help_text=_("Rows matching a member whose data already was the same.")
    )
    duplicate_count = models.PositiveIntegerField(_("duplicates"), default=0)
    invalid_count = models.PositiveIntegerField(_("invalid rows"), default=0)
    errors = models.JSONField(
        _("errors"), default=list, blank=True, help_text=_("Line, column and reason of each invalid row.")
    )
    invalid_rows_file = models.FileField(_("invalid rows file"), upload_to=import_upload_path, blank=True)
    ignored_columns = models.JSONField(
        _("ignored columns"), default=list, blank=True, help_text=_("Columns of the file that no field matched.")
    )
    # Reasons in the errors and the invalid-rows file are written in the uploader's language.
    language = models.CharField(_("language"), max_length=16, blank=True)
    failure = models.TextField(_("failure"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("uploaded by")
    )

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        ordering = ["-created_at"]
        permissions = [("view_all_importjobs", _("Can see imports uploaded by others"))]

    def __str__(self) -> str:
        return f"{self.get_target_display()} · {self.original_name or self.file.name}"

    @property
    def progress_percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status in {self.Status.SUCCEEDED, self.Status.REJECTED} else 0
        return min(100, round(100 * self.processed_rows / self.total_rows))

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.REJECTED, self.Status.FAILED}


# Layers, stages, churn scores and segments (issue 4) live in their own module; importing it here
# registers its models with the app.
from members.models_layers import *  # noqa: E402,F401,F403
