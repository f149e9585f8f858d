"""Rewards bought with points, and coupons issued to members and used on orders.

reward_redeem is one transaction across the reward's stock, the member's balance and the
per-member limit: the member's points account is locked first (so one member's redemptions run
one at a time and the limit holds), the stock is taken by a conditional UPDATE (stock - 1 WHERE
stock > 0, which the database serialises on the reward's row), and the points by points_debit.
Any refusal rolls all of it back.

Coupons are issued set-based (one bulk INSERT per batch of members) with codes drawn from the
operating system's secure random source; an issue key makes a repeated issuance give nothing
twice. coupon_redeem locks the coupon row and checks owner, status, validity and minimum spend.
"""

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.core.exceptions import ApplicationError
from loyalty.models import (
    Coupon,
    CouponBatch,
    CouponKind,
    CouponStatus,
    MemberTier,
    PointsAccount,
    Reward,
    RewardRedemption,
    Tier,
)
from members.models import Member

# No 0/O, 1/I/L: codes are read out over the phone and typed at the till.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12  # 31^12 ≈ 2^59 codes
ISSUE_BATCH_MEMBERS = 5_000


# Rewards -----------------------------------------------------------------------------------


@transaction.atomic
def reward_redeem(
    *, reward: Reward, member: Member, idempotency_key: str, now: datetime | None = None
) -> RewardRedemption:
    """Buy `reward` for `member` with points; a retry with the same key returns the first redemption."""
    from loyalty.services.points import points_debit

    now = now or timezone.now()
    # The account lock serialises this member's redemptions: the limit is counted under it.
    PointsAccount.objects.select_for_update().filter(member_id=member.pk).first()
    replay = RewardRedemption.objects.filter(idempotency_key=idempotency_key).first()
    if replay is not None:
        if replay.member_id != member.pk or replay.reward_id != reward.pk:
            raise ApplicationError(_("This idempotency key was already used for another redemption."))
        return replay
    reward = Reward.objects.select_related("min_tier").get(pk=reward.pk)
    if (
        not reward.is_active
        or (reward.valid_from and now < reward.valid_from)
        or (reward.valid_until and now >= reward.valid_until)
    ):
        raise ApplicationError(_("This reward is not available now."))
    if reward.min_tier is not None and _tier_rank(member) < reward.min_tier.rank:
        raise ApplicationError(
            _("This reward is for %(tier)s members and above.") % {"tier": reward.min_tier.name},
            extra={"tier": reward.min_tier.code},
        )
    if reward.per_member_limit is not None:
        taken = RewardRedemption.objects.filter(reward=reward, member=member).count()
        if taken >= reward.per_member_limit:
            raise ApplicationError(
                _("Each member may redeem this reward %(limit)s times.") % {"limit": reward.per_member_limit},
                extra={"limit": reward.per_member_limit},
            )
    if reward.stock is not None:
        if not Reward.objects.filter(pk=reward.pk, stock__gt=0).update(stock=F("stock") - 1, updated_at=now):
            raise ApplicationError(_("This reward is out of stock."))
    entry = points_debit(
        member=member,
        amount=reward.points_price,
        reason=gettext("Reward: %(reward)s") % {"reward": reward.name},
        idempotency_key=f"reward:{idempotency_key}",
        now=now,
    )
    return RewardRedemption.objects.create(
        reward=reward, member=member, points_entry=entry, idempotency_key=idempotency_key, created_at=now
    )


def _tier_rank(member: Member) -> int:
    rank = MemberTier.objects.filter(member=member).values_list("tier__rank", flat=True).first()
    if rank is None:  # everyone starts on the lowest tier
        rank = Tier.objects.order_by("rank").values_list("rank", flat=True).first() or 0
    return rank


# Coupons -----------------------------------------------------------------------------------


def coupon_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def coupons_issue(
    *,
    batch: CouponBatch,
    members: QuerySet[Member] | Iterable[int],
    issue_key: str,
    now: datetime | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> int:
    """Give one coupon of `batch` to each member (a queryset or member ids); return how many were new.

    Members who already got a coupon of this batch under `issue_key` get nothing more, so the
    same issuance may be repeated safely. Each chunk of members is one transaction, after which
    `on_progress(issued, members done, members)` is called.
    """
    now = now or timezone.now()
    if now >= batch.valid_until:
        raise ApplicationError(_("This coupon batch has expired."))
    issue_key = (issue_key or "").strip()
    if not issue_key:
        raise ApplicationError(_("An issue key is required."))
    if isinstance(members, QuerySet):
        member_ids = list(members.order_by("pk").values_list("pk", flat=True))
    else:
        member_ids = sorted({int(pk) for pk in members})
    created = 0
    for start in range(0, len(member_ids), ISSUE_BATCH_MEMBERS):
        chunk = member_ids[start : start + ISSUE_BATCH_MEMBERS]
        with transaction.atomic():
            created += _issue_chunk(batch=batch, member_ids=chunk, issue_key=issue_key, now=now)
        if on_progress is not None:
            on_progress(created, start + len(chunk), len(member_ids))
    return created


def _issue_chunk(*, batch: CouponBatch, member_ids: list[int], issue_key: str, now: datetime) -> int:
    issued = Coupon.objects.filter(batch=batch, issue_key=issue_key, member_id__in=member_ids)
    before = issued.count()
    missing = set(member_ids) - set(issued.values_list("member_id", flat=True))
    # A code collision (about one in 2^59 per pair) drops that row; the next round retries it.
    for _round in range(5):
        if not missing:
            break
        Coupon.objects.bulk_create(
            [
                Coupon(
                    batch=batch,
                    member_id=member_id,
                    code=coupon_code(),
                    issue_key=issue_key,
                    issued_at=now,
                    expires_at=batch.valid_until,
                )
                for member_id in sorted(missing)
            ],
            ignore_conflicts=True,
        )
        missing -= set(issued.values_list("member_id", flat=True))
    if missing:
        raise ApplicationError(_("Could not draw unique coupon codes; try again."))
    return issued.count() - before


def coupons_issue_by_member_numbers(
    *, batch: CouponBatch, member_numbers: Iterable[str], issue_key: str, now: datetime | None = None
) -> tuple[int, list[str]]:
    """Issue to members given by their member numbers; return (coupons issued, numbers not found)."""
    from members.selectors import member_ids_by_external_id

    numbers = [number.strip() for number in member_numbers if number and number.strip()]
    found = member_ids_by_external_id(numbers)
    unknown = sorted({number for number in numbers if number not in found})
    return coupons_issue(batch=batch, members=found.values(), issue_key=issue_key, now=now), unknown


@dataclass(frozen=True)
class CouponUse:
    coupon: Coupon
    discount: Decimal


@transaction.atomic
def coupon_redeem(
    *, code: str, member: Member, order_amount: Decimal, order_ref: str = "", now: datetime | None = None
) -> CouponUse:
    """Use a coupon on an order of `order_amount` yuan; return the coupon and the discount in yuan.

    Using it again for the same order returns the same result (a till retrying); any other use
    of a used coupon is refused.
    """
    now = now or timezone.now()
    code = (code or "").strip().upper()
    coupon = Coupon.objects.select_for_update(of=("self",)).select_related("batch").filter(code=code).first()
    if coupon is None or coupon.member_id != member.pk:
        # The same answer for both: a code of someone else's must not be confirmed to exist.
        raise ApplicationError(_("No such coupon for this member."))
    batch = coupon.batch
    if coupon.status == CouponStatus.USED:
        if order_ref and coupon.order_ref == order_ref:
            return CouponUse(coupon=coupon, discount=_discount(batch, order_amount))
        raise ApplicationError(_("This coupon has already been used."))
    if coupon.status == CouponStatus.EXPIRED or now >= coupon.expires_at:
        raise ApplicationError(_("This coupon has expired."))
    if now < batch.valid_from:
        raise ApplicationError(_("This coupon is not valid yet."))
    if order_amount < batch.min_spend:
        raise ApplicationError(
            _("This coupon needs a spend of at least %(min)s yuan.") % {"min": batch.min_spend},
            extra={"min_spend": str(batch.min_spend)},
        )
    coupon.status, coupon.used_at, coupon.order_ref = CouponStatus.USED, now, order_ref
    coupon.save(update_fields=["status", "used_at", "order_ref"])
    return CouponUse(coupon=coupon, discount=_discount(batch, order_amount))


def _discount(batch: CouponBatch, order_amount: Decimal) -> Decimal:
    if batch.kind == CouponKind.PERCENT:
        off = order_amount * batch.value / 100
    else:
        off = batch.value
    return min(off, order_amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def coupons_expire_due(*, now: datetime | None = None) -> int:
    """Mark issued coupons whose validity ended as expired (one UPDATE); return how many."""
    now = now or timezone.now()
    return Coupon.objects.filter(status=CouponStatus.ISSUED, expires_at__lte=now).update(status=CouponStatus.EXPIRED)
