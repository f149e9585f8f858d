from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    """Campaigns, the outbox and recall playbooks; member content lives in campaigns.ugc."""

    name = "campaigns"
    verbose_name = _("Campaigns")
