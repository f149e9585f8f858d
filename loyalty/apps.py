from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class LoyaltyConfig(AppConfig):
    """Tiers, the points ledger, rewards and coupons, honors and badges."""

    name = "loyalty"
    verbose_name = _("Loyalty")

    def ready(self) -> None:
        from loyalty.defaults import install_default_tiers_after_migrate

        post_migrate.connect(install_default_tiers_after_migrate, sender=self)

        from loyalty.receivers import enqueue_earn_for_events
        from members.services.events import events_recorded

        events_recorded.connect(enqueue_earn_for_events, dispatch_uid="loyalty.earn_for_events")
