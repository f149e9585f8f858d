"""What a campaign gives, through the loyalty services: points (points_credit_bulk, one idempotency
key per campaign, step and member), coupons (coupons_issue, set-based, one issue key per campaign and
step) and double-points windows (a PointsMultiplierWindow that follows the campaign's status)."""

import logging
from collections import defaultdict
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, CampaignKind, CampaignStatus, JourneyStep
from crm.core.exceptions import ApplicationError
from loyalty.models import CouponBatch, PointsMultiplierWindow
from loyalty.services.points import points_credit_bulk
from loyalty.services.rewards import coupons_issue
from members.models import Member

logger = logging.getLogger(__name__)


def points_key_prefix(*, campaign_id: int, step: str) -> str:
    """Each member's points from a campaign step are keyed `<prefix>:<member id>`."""
    return f"campaign:{campaign_id}:{step}"


def coupon_key(*, campaign_id: int, step: str) -> str:
    return f"campaign:{campaign_id}:{step}"


def offers_grant(*, deliveries, now: datetime | None = None) -> dict:
    """Give the offer of each delivery (its journey step's, else its campaign's) to its member.

    `deliveries` is a queryset of deliveries that reached their member. Safe to repeat: points
    and coupons are keyed per campaign, step and member. Returns {"points": n, "coupons": n}."""
    now = now or timezone.now()
    groups: dict[tuple, list[int]] = defaultdict(list)
    rows = deliveries.order_by("campaign_id", "step", "member_id").values_list(
        "campaign_id", "step", "journey_step_id", "member_id"
    )
    for campaign_id, step, journey_step_id, member_id in rows:
        groups[(campaign_id, step, journey_step_id)].append(member_id)
    if not groups:
        return {"points": 0, "coupons": 0}
    campaigns = Campaign.objects.in_bulk({k[0] for k in groups})
    steps = JourneyStep.objects.in_bulk({k[2] for k in groups if k[2]})
    batches = CouponBatch.objects.in_bulk(
        {o.coupon_batch_id for o in [*campaigns.values(), *steps.values()] if o.coupon_batch_id}
    )
    granted = {"points": 0, "coupons": 0}
    for (campaign_id, step, journey_step_id), member_ids in groups.items():
        campaign = campaigns[campaign_id]
        if campaign.kind == CampaignKind.REFERRAL:  # rewarded per referral by journeys.referrals_reward
            continue
        offer = steps[journey_step_id] if journey_step_id else campaign
        if offer.offer_points:
            points_credit_bulk(
                members=Member.objects.filter(pk__in=member_ids),
                amount=offer.offer_points,
                reason=f"{campaign.name} ({step})"[:200],
                idempotency_prefix=points_key_prefix(campaign_id=campaign_id, step=step),
                now=now,
            )
            granted["points"] += len(member_ids)
        if offer.coupon_batch_id:
            try:
                granted["coupons"] += coupons_issue(
                    batch=batches[offer.coupon_batch_id],
                    members=member_ids,
                    issue_key=coupon_key(campaign_id=campaign_id, step=step),
                    now=now,
                )
            except ApplicationError as error:  # an expired batch: the message went, the coupon cannot
                logger.warning("coupon not issued campaign=%s step=%s: %s", campaign_id, step, error)
    return granted


@transaction.atomic
def multiplier_window_sync(*, campaign: Campaign) -> PointsMultiplierWindow | None:
    """A double-points campaign's window is active exactly while the campaign runs: created when it
    starts, switched off when it is paused, finished or cancelled, on again when resumed."""
    if campaign.kind != CampaignKind.DOUBLE_POINTS:
        return None
    running = campaign.status == CampaignStatus.RUNNING
    window = campaign.multiplier_window
    if window is None:
        if not running:
            return None
        window = PointsMultiplierWindow(
            name=campaign.name[:100],
            starts_at=campaign.starts_at,
            ends_at=campaign.ends_at,  # required before approval (services._check_ready)
            factor=campaign.offer_multiplier,
        )
        window.full_clean()
        window.save()
        campaign.multiplier_window = window
        campaign.save(update_fields=["multiplier_window", "updated_at"])
        return window
    if window.is_active != running:
        window.is_active = running
        window.save(update_fields=["is_active", "updated_at"])
    return window
