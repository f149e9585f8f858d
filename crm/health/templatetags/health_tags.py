"""The compact health summary on the admin index."""

from django import template

from crm.health.models import HealthSettings
from crm.health.selectors import alarms_needing_attention, open_tasks, snapshot_latest

register = template.Library()


@register.inclusion_tag("health/admin_summary.html", takes_context=True)
def health_summary(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("health.view_healthsnapshot"):
        return {"show": False}
    return {
        "show": True,
        "latest": snapshot_latest(),
        "config": HealthSettings.objects.get_or_create(pk=HealthSettings.SINGLETON_ID)[0],
        "alarms": list(alarms_needing_attention()[:5]),
        "open_tasks": open_tasks().count(),
    }
