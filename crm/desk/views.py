"""Staff pages of the crisis desk (same login and roles as the admin): the board with live 3T
countdowns, a ticket's page with its actions and timeline, opening a ticket, and the reports."""

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from crm.core.exceptions import ApplicationError
from crm.desk import compensation, forms, selectors, services
from crm.desk.models import CompensationStatus, Ticket, TicketStatus

VIEW_PERMISSION = "desk.view_ticket"
REPORT_PERMISSION = "desk.view_desk_reports"
REPORT_DAYS = {30: 30, 90: 90, 365: 365}


def _require(request, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _clock_text() -> dict:
    return {
        "tell": _("Tell"),
        "time": _("Time"),
        "trust": _("Trust"),
        "done": _("done"),
        "done_late": _("done late"),
        "overdue": _("overdue"),
        "paused": _("paused"),
        "stopped": _("stopped"),
        "left": _("left"),
        "none": _("No open crisis ticket."),
        "affected": _("affected"),
        "compensated": _("compensated"),
        "owner": _("owner"),
        "stale": _("Connection lost; the clocks are counting from the last update."),
    }


@staff_member_required
@require_GET
def board(request):
    _require(request, VIEW_PERMISSION)
    context = {
        **admin.site.each_context(request),
        "title": _("Crisis board"),
        "board": {"now": timezone.now().isoformat(), "tickets": selectors.board_tickets()},
        "clock_text": _clock_text(),
        "can_open": request.user.has_perm(services.ADD_PERMISSION),
        "can_report": request.user.has_perm(REPORT_PERMISSION),
    }
    return TemplateResponse(request, "desk/board.html", context)


@staff_member_required
@require_GET
def board_data(request):
    """The board's tickets as JSON; the page polls it so clocks, steps and progress stay current."""
    _require(request, VIEW_PERMISSION)
    return JsonResponse({"now": timezone.now().isoformat(), "tickets": selectors.board_tickets()})


def _ticket_or_404(ticket_id: int) -> Ticket:
    ticket = Ticket.objects.select_related("owner", "opened_by", "compensation_batch").filter(pk=ticket_id).first()
    if ticket is None:
        raise Http404
    return ticket


@staff_member_required
@require_GET
def ticket_detail(request, ticket_id: int):
    _require(request, VIEW_PERMISSION)
    ticket = _ticket_or_404(ticket_id)
    return TemplateResponse(request, "desk/ticket.html", _ticket_context(request, ticket))


@staff_member_required
@require_GET
def ticket_data(request, ticket_id: int):
    """One ticket's clocks and compensation progress as JSON; its page polls it."""
    _require(request, VIEW_PERMISSION)
    ticket = _ticket_or_404(ticket_id)
    now = timezone.now()
    return JsonResponse({"now": now.isoformat(), "tickets": [selectors.ticket_data(ticket, now=now)]})


def _ticket_context(request, ticket: Ticket, **forms_given) -> dict:
    user = request.user
    can_work = user.has_perm(services.CHANGE_PERMISSION)
    active = ticket.status in (TicketStatus.OPEN, TicketStatus.PAUSED)
    return {
        **admin.site.each_context(request),
        "title": str(ticket),
        "ticket": ticket,
        "board": {"now": timezone.now().isoformat(), "tickets": [selectors.ticket_data(ticket, now=timezone.now())]},
        "clock_text": _clock_text(),
        "timeline": ticket.events.select_related("actor").order_by("at", "pk"),
        "can_work": can_work,
        "can_approve": user.has_perm(services.APPROVE_PERMISSION)
        and ticket.compensation_status == CompensationStatus.REQUESTED
        and ticket.compensation_requested_by_id != user.pk,
        "active": active,
        "announce_form": forms_given.get("announce") or forms.NoticeForm(prefix="announce"),
        "timetable_form": forms_given.get("timetable") or forms.NoticeForm(prefix="timetable"),
        "compensation_form": forms_given.get("compensation") or forms.CompensationForm(),
        "reason_form": forms_given.get("reason") or forms.ReasonForm(),
        "reassign_form": forms_given.get("reassign") or forms.ReassignForm(),
        "note_form": forms_given.get("note") or forms.NoteForm(),
        "next": request.GET.get("next", ""),
    }


def _back(request, ticket: Ticket):
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("desk:ticket", ticket_id=ticket.pk)


@staff_member_required
@require_POST
def ticket_action(request, ticket_id: int, action: str):
    """Every action of a ticket's page: validate its form, call the service, say what happened."""
    ticket = _ticket_or_404(ticket_id)
    user = request.user
    if action == "approve":
        _require(request, services.APPROVE_PERMISSION)
    else:
        _require(request, services.CHANGE_PERMISSION)
    form_classes = {
        "announce": lambda: forms.NoticeForm(request.POST, prefix="announce"),
        "timetable": lambda: forms.NoticeForm(request.POST, prefix="timetable"),
        "request": lambda: forms.CompensationForm(request.POST),
        "pause": lambda: forms.ReasonForm(request.POST),
        "reopen": lambda: forms.ReasonForm(request.POST),
        "reassign": lambda: forms.ReassignForm(request.POST),
        "close": lambda: forms.NoteForm(request.POST),
        "note": lambda: forms.ReasonForm(request.POST),
    }
    if action not in {*form_classes, "approve", "resume", "activate"}:
        raise Http404
    form = form_classes[action]() if action in form_classes else None
    if form is not None and not form.is_valid():
        key = {"pause": "reason", "reopen": "reason", "note": "reason", "close": "note", "request": "compensation"}.get(
            action, action
        )
        context = _ticket_context(request, ticket, **{key: form})
        context["form_error"] = True
        return TemplateResponse(request, "desk/ticket.html", context, status=400)
    data = form.cleaned_data if form is not None else {}
    try:
        if action in ("announce", "timetable"):
            call = services.ticket_announce if action == "announce" else services.ticket_publish_timetable
            call(ticket=ticket, actor=user, **data)
        elif action == "request":
            compensation.compensation_request(
                ticket=ticket, actor=user, kind=data["kind"], points=data.get("points") or 0, batch=data.get("batch")
            )
        elif action == "approve":
            compensation.compensation_approve(ticket=ticket, actor=user)
        elif action == "pause":
            services.ticket_pause(ticket=ticket, actor=user, reason=data["reason"])
        elif action == "resume":
            services.ticket_resume(ticket=ticket, actor=user)
        elif action == "reopen":
            services.ticket_reopen(ticket=ticket, actor=user, reason=data["reason"])
        elif action == "reassign":
            services.ticket_reassign(ticket=ticket, actor=user, owner=data["owner"], note=data["note"])
        elif action == "close":
            services.ticket_close(ticket=ticket, actor=user, note=data["note"])
        elif action == "note":
            services.ticket_note(ticket=ticket, actor=user, note=data["reason"])
        elif action == "activate":
            services.ticket_activate(ticket=ticket, actor=user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Done: %(action)s.") % {"action": services.ACTION_LABELS.get(action, _("note"))})
    return _back(request, ticket)


@staff_member_required
def ticket_new(request):
    _require(request, services.ADD_PERMISSION)
    form = forms.TicketOpenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            ticket = services.ticket_open(
                title=data["title"],
                description=data["description"],
                severity=data["severity"],
                source="staff",
                opened_by=request.user,
                owner=data["owner"],
                **form.audience(),
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, _("Ticket opened: the 3T clocks are running."))
            return redirect("desk:ticket", ticket_id=ticket.pk)
    status = 400 if request.method == "POST" else 200
    context = {**admin.site.each_context(request), "title": _("Open a crisis ticket"), "form": form}
    return TemplateResponse(request, "desk/ticket_new.html", context, status=status)


@staff_member_required
@require_GET
def reports(request):
    _require(request, REPORT_PERMISSION)
    try:
        days = REPORT_DAYS.get(int(request.GET.get("days", 90)), 90)
    except ValueError:
        days = 90
    end = timezone.now()
    rows = selectors.desk_report(start=end - timedelta(days=days), end=end)
    summary = selectors.report_summary(rows)
    chart = {
        "labels": [f"#{row.ticket_id}" for row in rows],
        "minutes": {name: [row.minutes_to[name] for row in rows] for name in ("tell", "time", "trust")},
        "exit_rate": [None if row.exit_rate is None else round(row.exit_rate * 100, 2) for row in rows],
        "complaint_rate": [None if row.complaint_rate is None else round(row.complaint_rate * 100, 2) for row in rows],
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Crisis desk reports"),
        "rows": rows,
        "summary": summary,
        "days": days,
        "ranges": REPORT_DAYS.keys(),
        "chart": chart,
        "chart_text": {
            "tell": _("Minutes to Tell"),
            "time": _("Minutes to Time"),
            "trust": _("Minutes to Trust"),
            # xgettext:no-python-format
            "exit": _("Left a group within a week (%)"),
            # xgettext:no-python-format
            "complaint": _("Complained within a week (%)"),
        },
    }
    return TemplateResponse(request, "desk/reports.html", context)
