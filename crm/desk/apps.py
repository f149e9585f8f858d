from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeskConfig(AppConfig):
    """Crisis tickets under the 3T SOP (Tell, Time, Trust): part of the crm ops desk."""

    name = "crm.desk"
    label = "desk"
    verbose_name = _("Crisis desk")
