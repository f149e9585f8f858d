"""Loyalty's models, one module per area; everything is importable from loyalty.models."""

from loyalty.models.badges import Badge, BadgeKind, BadgeRule, MemberBadge
from loyalty.models.earning import EarnRule, EarnRuleKind, PointsMultiplierWindow
from loyalty.models.jobs import LoyaltyJob, LoyaltyJobMember, LoyaltyJobRun
from loyalty.models.points import (
    LOT_SPENDING_ORDER,
    AppendOnlyError,
    EntryKind,
    LoyaltySettings,
    PointsAccount,
    PointsAllocation,
    PointsEntry,
)
from loyalty.models.rewards import Coupon, CouponBatch, CouponKind, CouponStatus, Reward, RewardRedemption
from loyalty.models.tiers import MemberTier, Tier, TierChange, TierDowngradeNotice, TierRule

__all__ = [
    "LOT_SPENDING_ORDER",
    "AppendOnlyError",
    "Badge",
    "BadgeKind",
    "BadgeRule",
    "Coupon",
    "CouponBatch",
    "CouponKind",
    "CouponStatus",
    "EarnRule",
    "EarnRuleKind",
    "EntryKind",
    "LoyaltyJob",
    "LoyaltyJobMember",
    "LoyaltyJobRun",
    "LoyaltySettings",
    "MemberBadge",
    "MemberTier",
    "PointsAccount",
    "PointsAllocation",
    "PointsEntry",
    "PointsMultiplierWindow",
    "Reward",
    "RewardRedemption",
    "Tier",
    "TierChange",
    "TierDowngradeNotice",
    "TierRule",
]
