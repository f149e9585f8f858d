from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HealthConfig(AppConfig):
    """Daily health snapshots, targets and alarms: part of the crm ops desk."""

    name = "crm.health"
    label = "health"
    verbose_name = _("Community health")
