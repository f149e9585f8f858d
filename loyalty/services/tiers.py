"""Tier changes: each locks the member's tier row and is kept as a TierChange with its reason.

Upgrades happen as soon as a member qualifies (tier_upgrade_if_qualified, to be called when a
purchase or an earn is recorded); downgrades wait for the periodic review, which is not built yet.
"""

from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from loyalty.models import MemberTier, Tier, TierChange
from members.models import Member


@transaction.atomic
def tier_assign(
    *,
    member: Member,
    tier: Tier,
    reason: str,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
) -> TierChange | None:
    """Put a member in `tier` from `now` for the tier's validity, recording why.

    Returns the change recorded, or None when the member already had that tier.
    """
    return _assign(member=member, tier=tier, reason=reason, actor=actor, now=now or timezone.now(), upgrade_only=False)


@transaction.atomic
def tier_upgrade_if_qualified(*, member: Member, now: datetime | None = None) -> TierChange | None:
    """Move the member up to the highest tier they now reach, never down; return the change, if any."""
    from loyalty.selectors import member_qualifying_totals

    now = now or timezone.now()
    status = _locked_status(member)
    current_rank = status.tier.rank if status else 0
    totals_by_period: dict[int, tuple] = {}
    for tier in Tier.objects.filter(rank__gt=current_rank).order_by("-rank"):
        period = tier.qualifying_period_days
        if period not in totals_by_period:
            totals_by_period[period] = member_qualifying_totals(member=member, days=period, now=now)
        spend, points = totals_by_period[period]
        if tier.is_reached(spend=spend, points=points):
            reason = gettext(
                "Qualified: spent %(spend)s yuan and earned %(points)s points in the last %(days)s days."
            ) % {"spend": spend, "points": points, "days": period}
            return _assign(member=member, tier=tier, reason=reason, actor=None, now=now, upgrade_only=True)
    return None


def _locked_status(member: Member) -> MemberTier | None:
    return MemberTier.objects.select_for_update().select_related("tier").filter(member=member).first()


def _assign(
    *, member: Member, tier: Tier, reason: str, actor: AbstractUser | None, now: datetime, upgrade_only: bool
) -> TierChange | None:
    valid_until = now + timedelta(days=tier.validity_days)
    status = _locked_status(member)
    if status is None:
        try:
            with transaction.atomic():
                MemberTier.objects.create(member=member, tier=tier, since=now, valid_until=valid_until)
        except IntegrityError:
            # A concurrent call gave the member a first tier meanwhile: decide again against it.
            status = _locked_status(member)
        else:
            return TierChange.objects.create(member=member, to_tier=tier, reason=reason, actor=actor)
    if status.tier_id == tier.pk or (upgrade_only and status.tier.rank >= tier.rank):
        return None
    from_tier = status.tier
    status.tier, status.since, status.valid_until = tier, now, valid_until
    status.save(update_fields=["tier", "since", "valid_until", "updated_at"])
    return TierChange.objects.create(member=member, from_tier=from_tier, to_tier=tier, reason=reason, actor=actor)
