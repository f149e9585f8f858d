"""Every write to points and tiers goes through these functions."""

from .badges import badge_award, badge_revoke, badges_award
from .earning import EarnResult, earn_key, points_earn_backfill, points_earn_for_events, refund_key
from .points import (
    LedgerDrift,
    expiry_key,
    points_adjust,
    points_credit,
    points_credit_bulk,
    points_debit,
    points_expire_due,
    points_reconcile,
    points_reverse,
)
from .rewards import (
    CouponUse,
    coupon_redeem,
    coupons_expire_due,
    coupons_issue,
    coupons_issue_by_member_numbers,
    reward_redeem,
)
from .tiers import tier_assign, tier_review, tier_upgrade_if_qualified, tiers_upgrade_if_qualified

__all__ = [
    "badge_award",
    "badge_revoke",
    "badges_award",
    "CouponUse",
    "coupon_redeem",
    "coupons_expire_due",
    "coupons_issue",
    "coupons_issue_by_member_numbers",
    "reward_redeem",
    "EarnResult",
    "earn_key",
    "points_earn_backfill",
    "points_earn_for_events",
    "refund_key",
    "LedgerDrift",
    "expiry_key",
    "points_adjust",
    "points_credit",
    "points_credit_bulk",
    "points_debit",
    "points_expire_due",
    "points_reconcile",
    "points_reverse",
    "tier_assign",
    "tier_review",
    "tier_upgrade_if_qualified",
    "tiers_upgrade_if_qualified",
]
