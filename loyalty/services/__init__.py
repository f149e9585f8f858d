"""Every write to points and tiers goes through these functions."""

from .points import (
    LedgerDrift,
    expiry_key,
    points_adjust,
    points_credit,
    points_debit,
    points_expire_due,
    points_reconcile,
    points_reverse,
)

__all__ = [
    "LedgerDrift",
    "expiry_key",
    "points_adjust",
    "points_credit",
    "points_debit",
    "points_expire_due",
    "points_reconcile",
    "points_reverse",
]
