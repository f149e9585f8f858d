from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    """Campaigns, the outbox, recall playbooks, UGC (built in a later issue)."""

    name = "campaigns"
    verbose_name = _("Campaigns")
