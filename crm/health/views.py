"""Staff page of the health dashboard (same login and roles as the admin)."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from crm.core.exceptions import ApplicationError
from crm.health import selectors, services
from crm.health.models import Alarm, DashboardTask, HealthSettings

CHART_TITLES = [
    ("activity_rate", gettext_lazy("Activity rate (%)")),
    ("ltv_multiple", gettext_lazy("LTV ÷ average order value")),
    ("open_rate", gettext_lazy("Content open rate (%)")),
    ("streak_share", gettext_lazy("7-day check-in streak share (%)")),
    ("exit_rate", gettext_lazy("Group exit rate (%)")),
    ("group_messages", gettext_lazy("Group messages per day")),
    ("complaints", gettext_lazy("Complaints per day")),
    ("points_liability_yuan", gettext_lazy("Points liability (yuan)")),
    ("sla_breaches", gettext_lazy("SLA breaches per day")),
]
RANGES = {30: gettext_lazy("30 days"), 90: gettext_lazy("90 days"), 365: gettext_lazy("1 year")}
DEFAULT_RANGE = 90


class NoteForm(forms.Form):
    note = forms.CharField(label=gettext_lazy("note"), max_length=2000, required=False)


class TaskCloseForm(forms.Form):
    status = forms.ChoiceField(
        choices=[
            (DashboardTask.Status.DONE, DashboardTask.Status.DONE.label),
            (DashboardTask.Status.DISMISSED, DashboardTask.Status.DISMISSED.label),
        ]
    )


def _days(request) -> int:
    try:
        days = int(request.GET.get("days", DEFAULT_RANGE))
    except ValueError:
        return DEFAULT_RANGE
    return days if days in RANGES else DEFAULT_RANGE


@staff_member_required
def dashboard(request):
    if not request.user.has_perm("health.view_healthsnapshot"):
        raise PermissionDenied
    days = _days(request)
    today = timezone.localdate()
    config = HealthSettings.objects.get_or_create(pk=HealthSettings.SINGLETON_ID)[0]
    context = {
        **admin.site.each_context(request),
        "title": _("Community health"),
        "config": config,
        "latest": selectors.snapshot_latest(),
        "chart_data": {
            **selectors.chart_series(first_day=today - timedelta(days=days)),
            "targets": {
                "activity_rate": float(config.activity_rate_target),
                "ltv_multiple": float(config.ltv_multiple_target),
                "open_rate": float(config.open_rate_target),
                "streak_share": float(config.streak_share_target),
                "exit_rate": float(config.exit_rate_target),
                "exit_alarm": float(config.exit_rate_max),
                "group_messages": config.group_messages_min,
            },
        },
        "chart_titles": CHART_TITLES,
        "chart_text": {
            "labels": {key: str(label) for key, label in CHART_TITLES},
            "target": _("target"),
            "alarm": _("alarm limit"),
        },
        "alarms": list(selectors.alarms_needing_attention()),
        "tasks": list(selectors.open_tasks()),
        "days": days,
        "ranges": RANGES.items(),
        "can_acknowledge": request.user.has_perm("health.acknowledge_alarm"),
        "can_close_tasks": request.user.has_perm("health.change_dashboardtask"),
        "can_set_targets": request.user.has_perm("health.change_healthsettings"),
    }
    return TemplateResponse(request, "health/dashboard.html", context)


def _bad_request(request, form) -> TemplateResponse:
    context = {**admin.site.each_context(request), "title": _("Community health"), "form": form}
    return TemplateResponse(request, "health/bad_request.html", context, status=400)


def _alarm_or_404(alarm_id: int) -> Alarm:
    alarm = Alarm.objects.filter(pk=alarm_id).first()
    if alarm is None:
        raise Http404
    return alarm


@staff_member_required
@require_POST
def alarm_acknowledge_view(request, alarm_id: int):
    if not request.user.has_perm("health.acknowledge_alarm"):
        raise PermissionDenied
    alarm = _alarm_or_404(alarm_id)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _bad_request(request, form)
    try:
        services.alarm_acknowledge(alarm_id=alarm.pk, actor=request.user, note=form.cleaned_data["note"])
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Alarm acknowledged: %(alarm)s") % {"alarm": alarm})
    return redirect("health:dashboard")


@staff_member_required
@require_POST
def alarm_resolve_view(request, alarm_id: int):
    if not request.user.has_perm("health.acknowledge_alarm"):
        raise PermissionDenied
    alarm = _alarm_or_404(alarm_id)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _bad_request(request, form)
    try:
        services.alarm_resolve(alarm_id=alarm.pk, actor=request.user, note=form.cleaned_data["note"])
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Alarm resolved: %(alarm)s") % {"alarm": alarm})
    return redirect("health:dashboard")


@staff_member_required
@require_POST
def task_close_view(request, task_id: int):
    if not request.user.has_perm("health.change_dashboardtask"):
        raise PermissionDenied
    if not DashboardTask.objects.filter(pk=task_id).exists():
        raise Http404
    form = TaskCloseForm(request.POST)
    if not form.is_valid():
        return _bad_request(request, form)
    try:
        task = services.dashboard_task_close(task_id=task_id, actor=request.user, status=form.cleaned_data["status"])
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Task closed: %(task)s") % {"task": task})
    return redirect("health:dashboard")
