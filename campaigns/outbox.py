"""The outbox: planning a campaign's deliveries set-based, dispatching them in claimed batches
with retries and back-off, and recording delivery receipts from gateways.

Planning is one INSERT … SELECT over the whole audience, never a loop over members: each row is
written once, already queued or skipped with the first reason that applies, in order: control
group (holdout), opted out of the channel, no address for it, left the group, daily cap, weekly cap
(promotional messages only). The caps join one aggregate of the members' recent promotional
messages; ON CONFLICT DO NOTHING makes planning twice add nothing. Planners run one at a time (they
lock the outbox settings row), so two campaigns planned at once cannot both take a member's last slot.
"""

import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns import channels
from campaigns.models import (
    Campaign,
    CampaignListMember,
    CampaignStatus,
    CampaignVariant,
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    MessageCategory,
    MessageChannel,
    OutboxSettings,
    SkipReason,
)
from campaigns.rules import (
    assignment_bucket_sql,
    local_day_bounds,
    planned_send_at,
    quiet_hours_release,
    retry_delay,
    variant_ranges,
)
from campaigns.selectors import campaign_template
from campaigns.templating import Rendered, message_context, render
from crm.core.exceptions import ApplicationError
from members.models import EventKind, Member, MemberEvent
from members.models_layers import SegmentMember

logger = logging.getLogger(__name__)

OPT_OUT_COLUMN = {
    MessageChannel.SMS: "sms_opt_out",
    MessageChannel.EMAIL: "email_opt_out",
    MessageChannel.WECOM: "wecom_opt_out",
}
# Rows that reached or may still reach the member count against the caps.
_CAPPED_STATUSES = tuple(s for s in DeliveryStatus.values if s not in {DeliveryStatus.SKIPPED, DeliveryStatus.FAILED})
# A row left in `sending` this long belongs to a worker that died; it goes back to the queue.
STUCK_AFTER = timedelta(minutes=10)
RECEIPT_RANK = {
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.OPENED: 3,
    DeliveryStatus.CLICKED: 4,
}


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _dt(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


@dataclass
class Plan:
    planned: int = 0
    queued: int = 0
    skipped: int = 0
    deferred: bool = False
    reasons: dict = field(default_factory=dict)


@transaction.atomic
def deliveries_plan(
    *,
    campaign: Campaign,
    step: str = "main",
    now: datetime | None = None,
    audience: QuerySet | None = None,
    journey_step_id: int | None = None,
) -> Plan:
    """Create the deliveries of one step of a campaign for its whole audience, skips marked.

    The audience is the campaign's segment or list, or `audience`, a queryset of members (journeys
    and recall select theirs with the ORM; it runs inside the INSERT … SELECT as a subquery)."""
    now = now or timezone.now()
    OutboxSettings.load()  # exists first, so that every planner waits on the same row lock
    settings = OutboxSettings.objects.select_for_update().get(pk=OutboxSettings.SINGLETON_ID)
    promotional = campaign.category == MessageCategory.PROMOTIONAL
    send_at = planned_send_at(now=now, send_time=campaign.send_time)
    release = quiet_hours_release(send_at, start=settings.quiet_start, end=settings.quiet_end) if promotional else None
    if release is not None:
        send_at = release

    if audience is not None:
        audience_sql, audience_params = audience.order_by().values(audience_member=F("pk")).query.sql_with_params()
        audience_sql = f"SELECT audience_member AS member_id FROM ({audience_sql}) m"
        audience_params = list(audience_params)
    elif campaign.segment_id is not None:
        audience_sql = f"SELECT member_id FROM {_q(SegmentMember._meta.db_table)} WHERE segment_id = %s"
        audience_params = [campaign.segment_id]
    else:
        audience_sql = f"SELECT member_id FROM {_q(CampaignListMember._meta.db_table)} WHERE campaign_id = %s"
        audience_params = [campaign.pk]

    # Each part is (SQL, parameters), joined in the order they appear in the statement.
    reasons: list[tuple[str, list, str]] = []  # (condition, params, reason): the first that applies wins
    joins: list[tuple[str, list]] = []
    variant_sql, variant_params = "NULL", []
    holdout_sql, holdout_params = "%s", [False]
    weights = list(CampaignVariant.objects.filter(campaign=campaign).order_by("pk").values_list("pk", "weight"))
    if weights or campaign.holdout_percent:
        # A/B arms and the control group, by a deterministic hash of (campaign, member).
        bucket = assignment_bucket_sql(campaign_id=campaign.pk, column="a.member_id")
        holdout_end, ranges = variant_ranges(
            holdout_percent=campaign.holdout_percent, weights=[w for _, w in weights] or [1]
        )
        if weights:
            whens = " ".join(f"WHEN {bucket} >= %s AND {bucket} < %s THEN %s" for _ in weights)
            variant_sql = f"CASE {whens} END"
            variant_params = [
                p for (vid, _w), (low, high) in zip(weights, ranges, strict=True) for p in (low, high, vid)
            ]
        if holdout_end:
            holdout_sql, holdout_params = f"({bucket} < %s)", [holdout_end]
            reasons.append((f"{bucket} < %s", [holdout_end], SkipReason.HOLDOUT))
    member = _q(Member._meta.db_table)
    event = _q(MemberEvent._meta.db_table)
    delivery = _q(Delivery._meta.db_table)
    joins.append((f"JOIN {member} mb ON mb.id = a.member_id", []))
    opt_out = OPT_OUT_COLUMN.get(campaign.channel)
    if opt_out:
        reasons.append((f"mb.{_q(opt_out)}", [], SkipReason.OPT_OUT))
    if campaign.channel == MessageChannel.EMAIL:
        reasons.append(("mb.email = ''", [], SkipReason.NO_ADDRESS))
    elif campaign.channel == MessageChannel.SMS:
        reasons.append(("mb.phone IS NULL", [], SkipReason.NO_ADDRESS))
    # Left the group: the last exit is after the last join (one aggregate over those events).
    joins.append(
        (
            f"LEFT JOIN (SELECT member_id FROM {event} WHERE kind IN (%s, %s) GROUP BY member_id "
            "HAVING MAX(CASE WHEN kind = %s THEN occurred_at END) > "
            "COALESCE(MAX(CASE WHEN kind = %s THEN occurred_at END), %s)) lg ON lg.member_id = a.member_id",
            [EventKind.GROUP_EXIT, EventKind.GROUP_JOIN, EventKind.GROUP_EXIT, EventKind.GROUP_JOIN,
             _dt(datetime(1970, 1, 1, tzinfo=now.tzinfo))],
        )
    )  # fmt: skip
    reasons.append(("lg.member_id IS NOT NULL", [], SkipReason.LEFT_GROUP))
    if promotional:
        day_start, day_end = local_day_bounds(send_at, days=1)
        week_start, _week_end = local_day_bounds(send_at, days=7)
        statuses = ", ".join(f"'{s}'" for s in _CAPPED_STATUSES)
        # The member's promotional messages that reached or may still reach them, this day and
        # the 7 days ending with it (other steps and campaigns: a re-plan never counts itself).
        joins.append(
            (
                f"LEFT JOIN (SELECT member_id, SUM(CASE WHEN scheduled_for >= %s THEN 1 ELSE 0 END) AS day_n, "
                f"COUNT(*) AS week_n FROM {delivery} WHERE category = '{MessageCategory.PROMOTIONAL}' "
                f"AND status IN ({statuses}) AND scheduled_for >= %s AND scheduled_for < %s "
                "AND NOT (campaign_id = %s AND step = %s) GROUP BY member_id) caps ON caps.member_id = a.member_id",
                [_dt(day_start), _dt(week_start), _dt(day_end), campaign.pk, step],
            )
        )
        reasons.append(("COALESCE(caps.day_n, 0) >= %s", [settings.daily_cap], SkipReason.DAILY_CAP))
        reasons.append(("COALESCE(caps.week_n, 0) >= %s", [settings.weekly_cap], SkipReason.WEEKLY_CAP))
    reason_sql = "CASE " + " ".join(f"WHEN {condition} THEN %s" for condition, _p, _r in reasons) + " ELSE '' END"
    reason_params = [p for _c, params, reason in reasons for p in (*params, reason)]
    status_sql = f"CASE WHEN ({reason_sql}) = '' THEN '{DeliveryStatus.QUEUED}' ELSE '{DeliveryStatus.SKIPPED}' END"

    plan = Plan(deferred=release is not None)
    with connection.cursor() as cursor:
        # The WHERE clause is also what lets SQLite parse ON CONFLICT after INSERT … SELECT.
        cursor.execute(
            f"INSERT INTO {delivery} (campaign_id, step, member_id, channel, category, status, skip_reason, "
            "scheduled_for, next_attempt_at, deferred, attempts, last_error, provider_id, claim_token, holdout, "
            "created_at, sent_via, journey_step_id, variant_id) "
            f"SELECT %s, %s, a.member_id, %s, %s, {status_sql}, {reason_sql}, %s, %s, %s, 0, '', '', '', "
            f"{holdout_sql}, %s, '', %s, {variant_sql} "
            f"FROM ({audience_sql}) a {' '.join(sql for sql, _p in joins)} WHERE a.member_id IS NOT NULL "
            "ON CONFLICT (campaign_id, step, member_id) DO NOTHING",
            [
                campaign.pk,
                step,
                campaign.channel,
                campaign.category,
                *reason_params,
                *reason_params,
                _dt(send_at),
                _dt(send_at),
                release is not None,
                *holdout_params,
                _dt(now),
                journey_step_id,
                *variant_params,
                *audience_params,
                *[p for _sql, params in joins for p in params],
            ],
        )
        plan.planned = cursor.rowcount
    if plan.planned:
        plan.reasons = dict(
            Delivery.objects.filter(campaign=campaign, step=step, created_at=now, status=DeliveryStatus.SKIPPED)
            .order_by()
            .values_list("skip_reason")
            .annotate(n=Count("pk"))
        )
    plan.skipped = sum(plan.reasons.values())
    plan.queued = plan.planned - plan.skipped
    logger.info(
        "deliveries planned campaign=%s step=%s planned=%s skipped=%s", campaign.pk, step, plan.planned, plan.skipped
    )
    return plan


# Dispatch -----------------------------------------------------------------------------------


@dataclass
class DispatchResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    # Back in the queue because the campaign was paused meanwhile; skipped by a fallback channel.
    held: int = 0
    skipped: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.deferred + self.held + self.skipped


def deliveries_reset_stuck(*, now: datetime | None = None) -> int:
    """Rows a dead worker left in `sending` go back to the queue (they were never marked sent)."""
    now = now or timezone.now()
    return Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_at__lt=now - STUCK_AFTER).update(
        status=DeliveryStatus.QUEUED, next_attempt_at=now
    )


@transaction.atomic
def deliveries_claim(*, limit: int, now: datetime | None = None) -> str | None:
    """Claim up to `limit` due deliveries of running campaigns on enabled channels.

    SKIP LOCKED lets parallel dispatchers take disjoint batches; the claim (status `sending`) is
    committed before anything is sent, so no other dispatcher can pick the same rows afterwards.
    Returns the claim token of the batch, or None when nothing is due.
    """
    now = now or timezone.now()
    enabled = usable_channels()
    ids = list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            status=DeliveryStatus.QUEUED,
            next_attempt_at__lte=now,
            campaign__status=CampaignStatus.RUNNING,
            channel__in=enabled,
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return None
    token = uuid.uuid4().hex
    claimed = Delivery.objects.filter(id__in=ids, status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.SENDING, claimed_at=now, claim_token=token, attempts=F("attempts") + 1
    )
    return token if claimed else None


def usable_channels() -> list[str]:
    """Channels whose messages can go out now: enabled ones, and those whose fallback is on and
    points at an enabled channel (the message then goes through the fallback)."""
    configs = {c.channel: c for c in ChannelConfig.objects.all()}
    return [
        channel
        for channel, config in configs.items()
        if (route := _route(config, configs)) is not None and configs[route].enabled
    ]


def _route(config: ChannelConfig, configs: dict) -> str | None:
    """The channel a message of `config`'s channel goes out through now."""
    if config.fallback_active and config.fallback_channel in configs:
        return config.fallback_channel
    return config.channel


def _fallback_refusal(delivery: Delivery, channel: str) -> str | None:
    """Why the member cannot be reached through a fallback channel (checked when sending, since
    planning checked only the campaign's own channel)."""
    member = delivery.member
    column = OPT_OUT_COLUMN.get(channel)
    if column and getattr(member, column):
        return SkipReason.OPT_OUT
    if (channel == MessageChannel.EMAIL and not member.email) or (channel == MessageChannel.SMS and not member.phone):
        return SkipReason.NO_ADDRESS
    return None


# How old a dispatcher's knowledge that a campaign runs may be: a pause stops its sending within this.
RUNNING_RECHECK_SECONDS = 0.5


class _RunningCheck:
    """Whether a campaign still runs, read again at most every RUNNING_RECHECK_SECONDS while a
    batch is sent, so that a campaign paused mid-batch sends nothing more after that."""

    def __init__(self):
        self.checked: dict[int, tuple[float, bool]] = {}

    def __call__(self, campaign_id: int) -> bool:
        at, running = self.checked.get(campaign_id, (None, False))
        if at is None or time.monotonic() - at > RUNNING_RECHECK_SECONDS:
            running = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.RUNNING).exists()
            self.checked[campaign_id] = (time.monotonic(), running)
        return running


@contextmanager
def _relaxed_commits():
    """Outcome writes do not wait for the disk (PostgreSQL's synchronous_commit off, this connection
    only, while a batch is sent). A database crash may then forget the last fraction of a second of
    outcomes: those rows go back to the queue as stuck and are sent again, which the gateway drops
    by the X-CRM-Delivery header. Without it every message waits for a WAL flush."""
    postgres = connection.vendor == "postgresql"
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")


def _finish(delivery_id: int, token: str, **values) -> bool:
    """Record the outcome of a claimed row; only a row still `sending` under this claim changes
    (a row reset as stuck and claimed again belongs to the new claim)."""
    rows = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.SENDING, claim_token=token)
    return bool(rows.update(**values))


def deliveries_send(*, token: str, now: datetime | None = None) -> DispatchResult:
    """Send the deliveries of one claim, one by one, recording each outcome as soon as it is known.

    A row whose campaign is no longer running (paused, cancelled) goes back to the queue unsent.
    A row of a channel whose fallback is on goes through the fallback channel (its template for
    that channel if it has one, else its own message), and the row records the channel used.
    """
    now = now or timezone.now()
    settings = OutboxSettings.load()
    configs = {c.channel: c for c in ChannelConfig.objects.all()}
    result = DispatchResult()
    rows = Delivery.objects.filter(status=DeliveryStatus.SENDING, claim_token=token).select_related(
        "member", "campaign__coupon_batch", "journey_step__coupon_batch"
    )
    with _relaxed_commits():
        _send_rows(rows, token=token, now=now, settings=settings, configs=configs, result=result)
    return result


def _send_rows(rows, *, token: str, now: datetime, settings: OutboxSettings, configs: dict, result) -> None:
    templates: dict[tuple, object] = {}
    _still_running = _RunningCheck()
    for delivery in rows.order_by("pk"):
        campaign = delivery.campaign
        step_key = delivery.journey_step.key if delivery.journey_step_id else ""
        if not _still_running(campaign.pk):
            _finish(delivery.pk, token, status=DeliveryStatus.QUEUED, attempts=F("attempts") - 1)
            result.held += 1
            continue
        if delivery.category == MessageCategory.PROMOTIONAL:
            release = quiet_hours_release(now, start=settings.quiet_start, end=settings.quiet_end)
            if release is not None:
                _finish(
                    delivery.pk,
                    token,
                    status=DeliveryStatus.QUEUED,
                    next_attempt_at=release,
                    deferred=True,
                    attempts=F("attempts") - 1,
                )
                result.deferred += 1
                continue
        via = _route(configs[delivery.channel], configs)
        if via != delivery.channel and (refusal := _fallback_refusal(delivery, via)) is not None:
            _finish(delivery.pk, token, status=DeliveryStatus.SKIPPED, skip_reason=refusal, sent_via=via)
            result.skipped += 1
            continue
        key = (campaign.pk, delivery.variant_id, via, step_key)
        if key not in templates:
            templates[key] = campaign_template(
                campaign=campaign, channel=via, variant_id=delivery.variant_id, step=step_key
            ) or campaign_template(
                campaign=campaign, channel=delivery.channel, variant_id=delivery.variant_id, step=step_key
            )
        template = templates[key]
        try:
            if template is None:
                raise channels.PermanentSendError("the campaign has no template for this channel")
            message: Rendered = render(
                channel=via,
                subject=template.subject,
                body=template.body,
                context=message_context(member=delivery.member, campaign=campaign, step=delivery.journey_step),
            )
            sent = channels.send(delivery=delivery, message=message, config=configs[via])
        except channels.RetryableSendError as error:
            if delivery.attempts >= settings.max_attempts:
                _finish(delivery.pk, token, status=DeliveryStatus.FAILED, last_error=str(error)[:2000])
                result.failed += 1
            else:
                delay = retry_delay(attempts=delivery.attempts, base_seconds=settings.retry_base_seconds)
                _finish(
                    delivery.pk,
                    token,
                    status=DeliveryStatus.QUEUED,
                    next_attempt_at=now + delay,
                    last_error=str(error)[:2000],
                )
                result.retried += 1
            logger.warning("delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, error)
            continue
        except channels.PermanentSendError as error:
            _finish(delivery.pk, token, status=DeliveryStatus.FAILED, last_error=str(error)[:2000])
            result.failed += 1
            logger.warning("delivery %s failed for good: %s", delivery.pk, error)
            continue
        if delivery.journey_step_id is None and (campaign.offer_points or campaign.coupon_batch_id):
            # The offer goes before the row is marked sent: a worker that dies in between leaves
            # the row `sending`, so it is sent again once reset as stuck (the gateway drops the
            # repeat by X-CRM-Delivery) and the offer, keyed per campaign, step and member, is not
            # given twice. Journey steps give theirs when they are planned.
            from campaigns.offers import offers_grant

            offers_grant(deliveries=Delivery.objects.filter(pk=delivery.pk), now=now)
        _finish(
            delivery.pk,
            token,
            status=DeliveryStatus.SENT,
            sent_at=timezone.now(),
            provider_id=sent.provider_id,
            sent_via="" if via == delivery.channel else via,
            last_error="",
        )
        result.sent += 1


def deliveries_dispatch(*, now: datetime | None = None, max_batches: int = 20) -> DispatchResult:
    """Claim and send due deliveries in bounded batches until none is due (or max_batches)."""
    now = now or timezone.now()
    deliveries_reset_stuck(now=now)
    limit = OutboxSettings.load().batch_size
    total = DispatchResult()
    for _batch in range(max_batches):
        token = deliveries_claim(limit=limit, now=now)
        if token is None:
            break
        result = deliveries_send(token=token, now=now)
        for name in ("sent", "retried", "failed", "deferred", "held", "skipped"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
    return total


# Delivery receipts --------------------------------------------------------------------------


@transaction.atomic
def delivery_receipt_record(*, channel: str, body: bytes, signature: str, now: datetime | None = None) -> Delivery:
    """Record a gateway's receipt (delivered, opened, clicked or failed) for one delivery.

    The body is the JSON the gateway POSTed, `{"delivery_id": 1, "status": "delivered"}` with an
    optional "error"; `signature` is its X-CRM-Signature header, HMAC-SHA256 of the body with the
    channel's secret. Statuses only move forward, so a late or replayed receipt changes nothing.
    """
    config = ChannelConfig.objects.filter(channel=channel).first()
    if config is None or not channels.signature_valid(config.secret, body, signature):
        raise ApplicationError(str(_("Invalid signature.")))
    try:
        payload = json.loads(body)
        delivery_id = int(payload["delivery_id"])
        status = str(payload["status"])
        if not 0 < delivery_id < 2**63:  # beyond a bigint primary key the database would refuse it
            raise ValueError(delivery_id)
    except (ValueError, KeyError, TypeError, OverflowError) as error:  # Infinity: OverflowError
        raise ApplicationError(str(_("Malformed receipt."))) from error
    if status not in {*RECEIPT_RANK, DeliveryStatus.FAILED} or status == DeliveryStatus.SENT:
        raise ApplicationError(str(_("Unknown receipt status.")))
    # A message sent through a fallback channel gets its receipts from that channel's gateway.
    delivery = (
        Delivery.objects.select_for_update()
        .filter(Q(channel=channel, sent_via="") | Q(sent_via=channel), pk=delivery_id)
        .first()
    )
    if delivery is None:
        raise ApplicationError(str(_("Unknown delivery.")))
    now = now or timezone.now()
    current = RECEIPT_RANK.get(delivery.status)
    if current is None:  # queued, skipped, sending, failed: no receipt applies
        return delivery
    if status == DeliveryStatus.FAILED:
        if delivery.status == DeliveryStatus.SENT:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = str(payload.get("error", ""))[:2000]
            delivery.save(update_fields=["status", "last_error"])
        return delivery
    if RECEIPT_RANK[status] <= current:
        return delivery
    delivery.status = status
    stamps = {
        DeliveryStatus.DELIVERED: "delivered_at",
        DeliveryStatus.OPENED: "opened_at",
        DeliveryStatus.CLICKED: "clicked_at",
    }
    updated = ["status"]
    for reached, stamp in stamps.items():
        if RECEIPT_RANK[reached] <= RECEIPT_RANK[status] and getattr(delivery, stamp) is None:
            setattr(delivery, stamp, now)
            updated.append(stamp)
    delivery.save(update_fields=updated)
    return delivery
