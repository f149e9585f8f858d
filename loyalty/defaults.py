"""Default rows installed by migrations; staff change them in the admin afterwards.

The tier names and benefits are brand content that members read, so they are data in the
brand's language rather than translated interface strings.
"""

from decimal import Decimal

DEFAULT_TIERS = [
    {
        "code": "bronze", "name": "青铜", "rank": 1, "min_spend": Decimal("0"),
        "discount_percent": Decimal("0"), "points_multiplier": Decimal("1.00"),
        "birthday_gift": "", "benefits": "积分兑换，50 积分抵 1 元",
    },
    {
        "code": "silver", "name": "白银", "rank": 2, "min_spend": Decimal("500"),
        "discount_percent": Decimal("5"), "points_multiplier": Decimal("1.20"),
        "birthday_gift": "生日 10 元券", "benefits": "会员价 95 折",
    },
    {
        "code": "gold", "name": "黄金", "rank": 3, "min_spend": Decimal("2000"),
        "discount_percent": Decimal("10"), "points_multiplier": Decimal("1.50"),
        "birthday_gift": "生日 30 元券", "benefits": "优惠券提前 2 小时领取；新品提前 7 天预览并参与投票",
    },
    {
        "code": "diamond", "name": "钻石", "rank": 4, "min_spend": Decimal("5000"),
        "discount_percent": Decimal("15"), "points_multiplier": Decimal("2.00"),
        "birthday_gift": "生日 100 元券", "benefits": "专属社群与一对一客服；线下专属活动邀请",
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
