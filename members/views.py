"""Staff pages of the members app: the layer and stage charts."""

from collections import defaultdict
from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.db.models.functions import TruncWeek
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from members.models_layers import LayerJobRun, LayerSnapshot, LifecycleStage, StageTransition, ValueLayer

CHART_DAYS = 90
FLOW_WEEKS = 8


def _series(dimension: str, labels: list[tuple[str, str]], since) -> dict:
    rows = (
        LayerSnapshot.objects.filter(dimension=dimension, day__gte=since)
        .order_by("day")
        .values_list("day", "value", "members")
    )
    by_day: dict = defaultdict(dict)
    for day, value, members in rows:
        by_day[day][value] = members
    days = sorted(by_day)
    return {
        "labels": [day.isoformat() for day in days],
        "datasets": [
            {"key": value, "label": str(label), "data": [by_day[day].get(value, 0) for day in days]}
            for value, label in labels
        ],
    }


def layer_dashboard_data(*, now=None) -> dict:
    """Everything the charts show, as plain data for json_script."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    stage_labels = dict(LifecycleStage.choices)
    week_start = today - timedelta(days=today.weekday())
    flows = (
        StageTransition.objects.filter(at__gte=now - timedelta(weeks=FLOW_WEEKS))
        .annotate(week=TruncWeek("at"))
        .values("week", "from_stage", "to_stage")
        .annotate(members=Count("*"))
        .order_by("week", "-members")
    )
    weekly: dict = defaultdict(dict)
    this_week = []
    for row in flows:
        week = timezone.localdate(row["week"]) if hasattr(row["week"], "hour") else row["week"]
        key = f"{row['from_stage']}→{row['to_stage']}"
        weekly[week.isoformat()][key] = weekly[week.isoformat()].get(key, 0) + row["members"]
        if week >= week_start:
            this_week.append(
                {
                    "from": str(stage_labels.get(row["from_stage"], row["from_stage"])),
                    "to": str(stage_labels.get(row["to_stage"], row["to_stage"])),
                    "members": row["members"],
                }
            )
    weeks = sorted(weekly)
    # The flows staff watch most: members falling out of the active stages.
    watched = [
        (LifecycleStage.ACTIVE, LifecycleStage.AT_RISK),
        (LifecycleStage.PAYING, LifecycleStage.AT_RISK),
        (LifecycleStage.AT_RISK, LifecycleStage.CHURNED),
        (LifecycleStage.AT_RISK, LifecycleStage.ACTIVE),
        (LifecycleStage.AT_RISK, LifecycleStage.PAYING),
        (LifecycleStage.CHURNED, LifecycleStage.SILENT),
    ]
    return {
        "layers": _series(LayerSnapshot.Dimension.LAYER, list(ValueLayer.choices), today - timedelta(days=CHART_DAYS)),
        "stages": _series(
            LayerSnapshot.Dimension.STAGE, list(LifecycleStage.choices), today - timedelta(days=CHART_DAYS)
        ),
        "flows": {
            "labels": weeks,
            "datasets": [
                {
                    "label": f"{stage_labels[a]} → {stage_labels[b]}",
                    "data": [weekly[week].get(f"{a}→{b}", 0) for week in weeks],
                }
                for a, b in watched
            ],
        },
        "this_week": sorted(this_week, key=lambda flow: -flow["members"]),
    }


@staff_member_required
def layers_dashboard(request):
    if not (request.user.has_perm("members.view_layersnapshot") or request.user.has_perm("members.view_memberscore")):
        raise PermissionDenied
    data = layer_dashboard_data()
    context = {
        **admin.site.each_context(request),
        "title": _("Layers and lifecycle stages"),
        "chart_data": data,
        "this_week": data["this_week"],
        "latest_run": LayerJobRun.objects.exclude(kind=LayerJobRun.Kind.SEGMENTS)
        .order_by("-started_at", "-id")
        .first(),
        "has_data": bool(data["layers"]["labels"]),
    }
    return TemplateResponse(request, "members/layers_dashboard.html", context)
