from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UgcConfig(AppConfig):
    """Member content (UGC) with moderation, and co-creation polls: part of campaigns."""

    name = "campaigns.ugc"
    label = "ugc"
    verbose_name = _("Member content and co-creation")
