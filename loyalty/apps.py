from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LoyaltyConfig(AppConfig):
    """Tiers, the points ledger, rewards and coupons, honors and badges (built in a later issue)."""

    name = "loyalty"
    verbose_name = _("Loyalty")
