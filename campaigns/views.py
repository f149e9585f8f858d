"""Staff pages of campaigns (the admin holds the rest): recall results per playbook."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from campaigns.models import ChurnReason, RecallPlaybook, RecallSettings
from campaigns.recall import recall_results


@staff_member_required
def recall_report(request):
    """Per churn reason: how many members the playbook contacted and how many came back, against its
    control group, as a chart and a table."""
    if not request.user.has_perm("campaigns.view_campaign"):
        raise PermissionDenied
    results = recall_results()
    labels = dict(ChurnReason.choices)
    chart = {
        "labels": [str(labels[r.reason]) for r in results],
        "datasets": [
            {"label": str(_("contacted")), "data": [round(r.rate, 1) if r.rate is not None else None for r in results]},
            {
                "label": str(_("control group")),
                "data": [round(r.control_rate, 1) if r.control_rate is not None else None for r in results],
            },
        ],
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Recall results"),
        "results": [(labels[r.reason], r) for r in results],
        "chart_data": chart,
        "playbooks": RecallPlaybook.objects.select_related("campaign").order_by("reason"),
        "came_back_days": RecallSettings.load().came_back_days,
    }
    return TemplateResponse(request, "campaigns/recall_report.html", context)
