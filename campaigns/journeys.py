"""Journeys that run by themselves. Each running campaign of a journey kind is visited by the
journey job (crm/schedules.py); for each of its active steps the members due today are selected
with one ORM query and planned through the outbox in one INSERT … SELECT (caps, quiet hours and
opt-outs apply as to any campaign). A delivery's step names the occasion (e.g. `birthday:2026`),
so the unique (campaign, step, member) makes every occasion send once however often the job runs,
and the job looks back a few days so that a missed run catches up.

- welcome: members who joined `value` days ago (since the journey started): day 0 welcome and gift,
  day 3 guide, day 7 first-order nudge, as staff set the steps.
- birthday: members whose birthday is today; the step whose tier is the member's tier gives its gift.
- check-in challenge: members whose check-in streak reaches exactly `value` days today; the step's
  points go with the message and its badge is awarded by loyalty's own badge rule.
- referral: an invite event names the invitee (`payload.invitee`, a member number) and the device
  it came from (`payload.device`); when the invitee has joined (value 0) or paid (value 1), both
  get the step's coupon, once per invitee, phone and device (Referral's unique constraints).
- browse: a product viewed for at least `value` seconds (an interaction event `view` with
  `payload.seconds`) and no purchase since, at least BROWSE_GRACE after the view: a coupon.
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from campaigns.models import Campaign, CampaignKind, CampaignStatus, Delivery, JourneyStep, Referral
from campaigns.offers import coupon_key, offers_grant
from campaigns.outbox import deliveries_plan
from campaigns.rules import LOCAL
from crm.core.exceptions import ApplicationError
from loyalty.models import CouponBatch, MemberTier
from loyalty.services.badges import badges_award
from loyalty.services.rewards import coupons_issue
from members.models import EventKind, InteractionKind, Member, MemberEvent

logger = logging.getLogger(__name__)

# How many past days a daily run still picks up (a missed run, a late event).
CATCH_UP_DAYS = 2
# A view only triggers once the member had this long to order.
BROWSE_GRACE = timedelta(minutes=30)
BROWSE_LOOKBACK = timedelta(days=1)


@dataclass
class JourneyRun:
    planned: dict = field(default_factory=dict)  # "campaign-id/step-key": rows queued or skipped

    @property
    def total(self) -> int:
        return sum(self.planned.values())


def _local_today(now: datetime) -> date:
    return now.astimezone(LOCAL).date()


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=LOCAL)


def welcome_audience(*, campaign: Campaign, step: JourneyStep, now: datetime) -> QuerySet:
    today = _local_today(now)
    first_day = today - timedelta(days=step.value + CATCH_UP_DAYS)
    last_day = today - timedelta(days=step.value)
    return Member.objects.filter(
        joined_at__gte=max(campaign.starts_at, _local_midnight(first_day)),
        joined_at__lt=_local_midnight(last_day + timedelta(days=1)),
    )


def birthday_audience(*, campaign: Campaign, step: JourneyStep, now: datetime) -> QuerySet:
    today = _local_today(now)
    days = Q(birthday__month=today.month, birthday__day=today.day)
    if today.month == 2 and today.day == 28 and not _is_leap(today.year):
        days |= Q(birthday__month=2, birthday__day=29)  # born on 29 February: celebrated on the 28th
    members = Member.objects.filter(days)
    tiers = MemberTier.objects.filter(member=OuterRef("pk"))
    if step.tier_id is not None:
        return members.filter(Exists(tiers.filter(tier_id=step.tier_id)))
    other_tiers = campaign.steps.filter(is_active=True, tier__isnull=False).values("tier_id")
    return members.exclude(Exists(tiers.filter(tier_id__in=other_tiers)))


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def check_in_audience(*, campaign: Campaign, step: JourneyStep, now: datetime) -> QuerySet:
    """Members whose streak reaches exactly `value` days today: a check-in on each of the last
    `value` local days and none the day before (so a streak is rewarded once, when it gets there)."""
    today = _local_today(now)
    start = _local_midnight(today - timedelta(days=step.value - 1))
    end = _local_midnight(today + timedelta(days=1))
    check_ins = MemberEvent.objects.filter(member=OuterRef("pk"), kind=EventKind.CHECK_IN)
    days = (
        check_ins.filter(occurred_at__gte=start, occurred_at__lt=end)
        .annotate(day=TruncDate("occurred_at", tzinfo=LOCAL))
        .order_by()
        .values("member")
        .annotate(n=Count("day", distinct=True))
        .values("n")
    )
    day_before = check_ins.filter(occurred_at__gte=start - timedelta(days=1), occurred_at__lt=start)
    # Only members who checked in today can reach a streak today (the events' kind/time index).
    checked_in_today = MemberEvent.objects.filter(
        kind=EventKind.CHECK_IN, occurred_at__gte=_local_midnight(today), occurred_at__lt=end
    ).values("member_id")
    return (
        Member.objects.filter(pk__in=checked_in_today)
        .annotate(streak_days=Subquery(days))
        .filter(streak_days=step.value)
        .exclude(Exists(day_before))
    )


def browse_audience(*, campaign: Campaign, step: JourneyStep, now: datetime) -> QuerySet:
    views = MemberEvent.objects.annotate(seconds=Cast(KeyTextTransform("seconds", "payload"), IntegerField())).filter(
        kind=EventKind.INTERACTION,
        sub_kind=InteractionKind.VIEW,
        occurred_at__gte=max(campaign.starts_at, now - BROWSE_LOOKBACK),
        occurred_at__lte=now - BROWSE_GRACE,
        seconds__gte=step.value,
    )
    bought_since = MemberEvent.objects.filter(
        member=OuterRef("member"), kind=EventKind.PURCHASE, occurred_at__gte=OuterRef("occurred_at")
    )
    return Member.objects.filter(pk__in=views.exclude(Exists(bought_since)).values("member_id"))


AUDIENCES = {
    CampaignKind.WELCOME: welcome_audience,
    CampaignKind.BIRTHDAY: birthday_audience,
    CampaignKind.CHECK_IN: check_in_audience,
    CampaignKind.BROWSE: browse_audience,
}


def occasion(*, campaign: Campaign, step: JourneyStep, now: datetime) -> str:
    """The delivery step: what makes one message of this step unique for a member."""
    today = _local_today(now)
    if campaign.kind == CampaignKind.WELCOME:
        return step.key  # once in a member's life
    if campaign.kind == CampaignKind.BIRTHDAY:
        return f"birthday:{today.year}"  # once a year, whichever tier's step
    return f"{step.key}:{today.isoformat()}"  # check-in streaks, browse: once a day at most


def journeys_run(*, now: datetime | None = None) -> JourneyRun:
    """Plan today's messages of every running journey (and reward referrals)."""
    now = now or timezone.now()
    run = JourneyRun()
    kinds = [*AUDIENCES, CampaignKind.REFERRAL]
    campaigns = Campaign.objects.filter(status=CampaignStatus.RUNNING, kind__in=kinds, starts_at__lte=now)
    for campaign in campaigns.order_by("pk"):
        for step in campaign.steps.filter(is_active=True).order_by("value", "pk"):
            label = f"{campaign.pk}/{step.key}"
            if campaign.kind == CampaignKind.REFERRAL:
                run.planned[label] = referrals_reward(campaign=campaign, step=step, now=now)
                continue
            audience = AUDIENCES[campaign.kind](campaign=campaign, step=step, now=now)
            plan = deliveries_plan(
                campaign=campaign,
                step=occasion(campaign=campaign, step=step, now=now),
                now=now,
                audience=audience,
                journey_step_id=step.pk,
            )
            run.planned[label] = plan.planned
            # A journey's gift is earned by what the member did (joined, a streak, a birthday), so it is
            # given to every member planned, also one whose message a cap or an opt-out held back.
            offers_grant(
                deliveries=Delivery.objects.filter(campaign=campaign, journey_step=step, created_at=now, holdout=False),
                now=now,
            )
            if campaign.kind == CampaignKind.CHECK_IN and step.badge_id is not None:
                badges_award(now=now, badges=[step.badge])
    logger.info("journeys run campaigns=%s planned=%s", len(run.planned), run.total)
    return run


# Referral -------------------------------------------------------------------------------------


def referral_candidates(*, campaign: Campaign, step: JourneyStep, now: datetime) -> QuerySet:
    """Invite events since the campaign started whose invitee has joined (or paid, value 1)."""
    invitees = Member.objects.filter(external_id=OuterRef("invitee_number")).exclude(pk=OuterRef("member_id"))
    if step.value:
        invitees = invitees.filter(orders_count__gt=0)
    return (
        MemberEvent.objects.filter(kind=EventKind.INVITE, occurred_at__gte=campaign.starts_at, occurred_at__lte=now)
        .annotate(
            invitee_number=KeyTextTransform("invitee", "payload"),
            device_id=KeyTextTransform("device", "payload"),
        )
        .annotate(invitee_id=Subquery(invitees.values("pk")[:1]))
        .filter(invitee_id__isnull=False)
    )


def referrals_reward(*, campaign: Campaign, step: JourneyStep, now: datetime) -> int:
    """Record the new referrals set-based (the unique constraints drop a second reward for the
    same invitee, phone or device), then give both sides the step's coupon and message."""
    candidates = referral_candidates(campaign=campaign, step=step, now=now)
    member = Member._meta.db_table
    select_sql, params = (
        candidates.annotate(event_id=F("pk"))
        .order_by("occurred_at", "pk")
        .values("member_id", "invitee_id", "device_id", "event_id")
        .query.sql_with_params()
    )
    referral = Referral._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {referral} (campaign_id, inviter_id, invitee_id, invitee_phone, device, invite_event_id, "
            "rewarded_at) "
            f"SELECT %s, c.member_id, c.invitee_id, COALESCE(i.phone, ''), COALESCE(c.device_id, ''), c.event_id, %s "
            f"FROM ({select_sql}) c JOIN {member} i ON i.id = c.invitee_id WHERE true "
            "ON CONFLICT DO NOTHING",
            [campaign.pk, connection.ops.adapt_datetimefield_value(now), *params],
        )
    new = Referral.objects.filter(campaign=campaign, rewarded_at=now)
    count = new.count()
    if not count:
        return 0
    if step.coupon_batch_id is not None:
        batch = CouponBatch.objects.get(pk=step.coupon_batch_id)
        for referral_id, inviter_id, invitee_id in new.values_list("pk", "inviter_id", "invitee_id"):
            try:
                # One issue key per referral: an inviter gets a coupon for every friend, never two for one.
                coupons_issue(
                    batch=batch,
                    members=[inviter_id, invitee_id],
                    issue_key=coupon_key(campaign_id=campaign.pk, step=f"referral:{referral_id}"),
                    now=now,
                )
            except ApplicationError as error:
                logger.warning("referral coupon not issued campaign=%s: %s", campaign.pk, error)
                break
    members = Member.objects.filter(Q(pk__in=new.values("inviter_id")) | Q(pk__in=new.values("invitee_id")))
    # The coupons went with the referral; offers_grant gives nothing more for referral messages.
    deliveries_plan(
        campaign=campaign,
        step=f"{step.key}:{now:%Y%m%d%H%M%S}",
        now=now,
        audience=members,
        journey_step_id=step.pk,
    )
    return count
