"""Default rows installed by migrations; staff change them in the admin afterwards.

The tier names and benefits are brand content that members read, so they are data in the
brand's language rather than translated interface strings.
"""

from decimal import Decimal

DEFAULT_TIERS = [
    {
        "code": "bronze",
        "name": "青铜",
        "rank": 1,
        "min_spend": Decimal("0"),
        "discount_percent": Decimal("0"),
        "points_multiplier": Decimal("1.00"),
        "birthday_gift": "",
        "benefits": "积分兑换，50 积分抵 1 元",
    },
    {
        "code": "silver",
        "name": "白银",
        "rank": 2,
        "min_spend": Decimal("500"),
        "discount_percent": Decimal("5"),
        "points_multiplier": Decimal("1.20"),
        "birthday_gift": "生日 10 元券",
        "benefits": "会员价 95 折",
    },
    {
        "code": "gold",
        "name": "黄金",
        "rank": 3,
        "min_spend": Decimal("2000"),
        "discount_percent": Decimal("10"),
        "points_multiplier": Decimal("1.50"),
        "birthday_gift": "生日 30 元券",
        "benefits": "优惠券提前 2 小时领取；新品提前 7 天预览并参与投票",
    },
    {
        "code": "diamond",
        "name": "钻石",
        "rank": 4,
        "min_spend": Decimal("5000"),
        "discount_percent": Decimal("15"),
        "points_multiplier": Decimal("2.00"),
        "birthday_gift": "生日 100 元券",
        "benefits": "专属社群与一对一客服；线下专属活动邀请",
    },
]


def install_default_tiers(apps) -> None:
    """Create the default tiers when there are none; never touches tiers staff have edited."""
    Tier = apps.get_model("loyalty", "Tier")
    if Tier.objects.exists():
        return
    Tier.objects.bulk_create(Tier(**values) for values in DEFAULT_TIERS)


def install_default_tiers_after_migrate(sender, **kwargs) -> None:
    # A flushed database (transactional tests) loses migration-installed rows; put them back.
    from django.apps import apps

    install_default_tiers(apps)
    if not apps.get_model("loyalty", "Badge").objects.exists():
        install_default_badges(apps)


# Honors (DOMAIN.md "Honors and badges"): the three titles and the check-in streak badges.
DEFAULT_BADGES = [
    {
        "code": "chief-experience-officer",
        "name": "首席体验官",
        "kind": "title",
        "rule": "manual",
        "threshold": Decimal("0"),
        "period_days": None,
        "validity_days": 365,
        "description": "由运营团队选出，参与新品共创与测评的会员。",
        "privileges": "新品优先试用；专属客服",
    },
    {
        "code": "active-star",
        "name": "活跃之星",
        "kind": "title",
        "rule": "top_active",
        "threshold": Decimal("5"),
        "period_days": 30,
        "validity_days": 30,
        "description": "近 30 天最活跃的前 5% 会员。",
        "privileges": "优惠券提前 2 小时领取",
    },
    {
        "code": "community-expert",
        "name": "社群达人",
        "kind": "title",
        "rule": "invites",
        "threshold": Decimal("10"),
        "period_days": 90,
        "validity_days": 90,
        "description": "近 90 天邀请好友 10 次以上的会员。",
        "privileges": "社群专属活动邀请",
    },
    {
        "code": "check-in-7",
        "name": "连续签到 7 天",
        "kind": "badge",
        "rule": "check_in_streak",
        "threshold": Decimal("7"),
        "period_days": None,
        "validity_days": None,
        "description": "连续 7 天签到。",
        "privileges": "",
    },
    {
        "code": "check-in-21",
        "name": "21 天打卡",
        "kind": "badge",
        "rule": "check_in_streak",
        "threshold": Decimal("21"),
        "period_days": None,
        "validity_days": None,
        "description": "连续 21 天签到。",
        "privileges": "解锁进阶课程",
    },
]


def install_default_badges(apps) -> None:
    """Create the default titles and badges that are missing (by code); never touches edited ones."""
    Badge = apps.get_model("loyalty", "Badge")
    existing = set(Badge.objects.values_list("code", flat=True))
    Badge.objects.bulk_create(Badge(**values) for values in DEFAULT_BADGES if values["code"] not in existing)
