"""Recall by churn reason. Every day the recall job picks the at-risk and churned members (the
lifecycle stage computed by members' layers job), infers why each left, and queues the message of
the playbook for that reason to those not contacted by any recall within its cooldown, with the
playbook's campaign's control group kept out. Whether a member came back (any interaction or
purchase within RecallSettings.came_back_days of the message) is measured against that control group.

The reason, first that applies: set by staff (MemberChurnReason); the category of the last complaint
in the history window (quality, price; any other complaint: service); a refund in the window
(quality); a category the member used to buy (a purchase event's `payload.category`) and has not
bought since the lapse period (competitor); else unknown.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, CharField, Count, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns.models import (
    CampaignKind,
    CampaignStatus,
    ChurnReason,
    Delivery,
    MemberChurnReason,
    RecallPlaybook,
    RecallSettings,
)
from campaigns.outbox import deliveries_plan
from campaigns.rules import LOCAL, two_proportion_test
from crm.core.exceptions import ApplicationError
from members.models import INTERACTION_KINDS, EventKind, Member, MemberEvent
from members.models_layers import LifecycleStage, MemberScore

logger = logging.getLogger(__name__)

RECALL_STAGES = (LifecycleStage.AT_RISK, LifecycleStage.CHURNED)
CAME_BACK_KINDS = sorted(INTERACTION_KINDS | {EventKind.PURCHASE})


def churn_reason_expression(*, now: datetime, settings: RecallSettings) -> tuple[Case, Subquery]:
    """SQL expressions over a Member queryset: the churn reason (a ChurnReason value), which reads
    the annotation `complaint_topic`, and that annotation (the last complaint's category)."""
    since = now - timedelta(days=settings.history_days)
    cutoff = now - timedelta(days=settings.lapsed_category_days)
    events = MemberEvent.objects.filter(member=OuterRef("pk"), occurred_at__gte=since, occurred_at__lte=now)
    staff = MemberChurnReason.objects.filter(member=OuterRef("pk")).values("reason")[:1]
    last_complaint = (
        events.filter(kind=EventKind.COMPLAINT)
        .annotate(
            topic=Coalesce(
                KeyTextTransform("category", "payload"),
                KeyTextTransform("topic", "payload"),
                Value(""),
                output_field=CharField(),
            )
        )
        .order_by("-occurred_at", "-pk")
        .values("topic")[:1]
    )
    bought_since = (
        MemberEvent.objects.filter(
            member=OuterRef("member_id"), kind=EventKind.PURCHASE, occurred_at__gt=cutoff, occurred_at__lte=now
        )
        .annotate(bought=KeyTextTransform("category", "payload"))
        .filter(bought=OuterRef("category"))
    )
    lapsed = (
        events.filter(kind=EventKind.PURCHASE, occurred_at__lte=cutoff)
        .annotate(category=KeyTextTransform("category", "payload"))
        .filter(category__isnull=False)
        .exclude(category="")
        .exclude(Exists(bought_since))
    )
    complaint = Subquery(last_complaint, output_field=CharField())
    reason = Case(
        When(Exists(staff), then=Subquery(staff, output_field=CharField())),
        When(complaint_topic=ChurnReason.QUALITY, then=Value(ChurnReason.QUALITY)),
        When(complaint_topic=ChurnReason.PRICE, then=Value(ChurnReason.PRICE)),
        When(complaint_topic__isnull=False, then=Value(ChurnReason.SERVICE)),  # service, delivery, other
        When(Exists(events.filter(kind=EventKind.REFUND)), then=Value(ChurnReason.QUALITY)),
        When(Exists(lapsed), then=Value(ChurnReason.COMPETITOR)),
        default=Value(ChurnReason.UNKNOWN),
        output_field=CharField(),
    )
    return reason, complaint


def members_with_reason(*, now: datetime, settings: RecallSettings | None = None) -> QuerySet:
    """Members annotated with `churn_reason` (all members: narrow the queryset before evaluating)."""
    settings = settings or RecallSettings.load()
    reason, complaint = churn_reason_expression(now=now, settings=settings)
    return Member.objects.annotate(complaint_topic=complaint).annotate(churn_reason=reason)


def recall_audience(*, playbook: RecallPlaybook, now: datetime, settings: RecallSettings) -> QuerySet:
    at_risk = MemberScore.objects.filter(lifecycle_stage__in=RECALL_STAGES).values("member_id")
    contacted = Delivery.objects.filter(
        member=OuterRef("pk"),
        campaign__kind=CampaignKind.RECALL,
        created_at__gt=now - timedelta(days=playbook.cooldown_days),
    )
    return (
        members_with_reason(now=now, settings=settings)
        .filter(pk__in=at_risk)
        .exclude(Exists(contacted))
        .filter(churn_reason=playbook.reason)
    )


def recall_run(*, now: datetime | None = None) -> dict[str, int]:
    """Queue today's recall messages, one playbook after the other; {reason: members planned}."""
    now = now or timezone.now()
    settings = RecallSettings.load()
    planned = {}
    playbooks = RecallPlaybook.objects.filter(campaign__status=CampaignStatus.RUNNING).select_related("campaign")
    for playbook in playbooks.order_by("reason"):
        plan = deliveries_plan(
            campaign=playbook.campaign,
            step=f"recall:{now.astimezone(LOCAL).date().isoformat()}",
            now=now,
            audience=recall_audience(playbook=playbook, now=now, settings=settings),
        )
        planned[playbook.reason] = plan.planned
    logger.info("recall run planned=%s", planned)
    return planned


@transaction.atomic
def member_churn_reason_set(*, member: Member, reason: str, actor, note: str = "") -> MemberChurnReason:
    """Staff say why a member left; the recall job uses it instead of what it infers."""
    if reason not in ChurnReason.values:
        raise ApplicationError(str(_("Unknown churn reason.")))
    record, _created = MemberChurnReason.objects.update_or_create(
        member=member, defaults={"reason": reason, "note": note, "set_by": actor, "set_at": timezone.now()}
    )
    return record


# Outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecallResult:
    reason: str
    contacted: int
    came_back: int
    control: int
    control_came_back: int
    confidence: float | None

    @property
    def rate(self) -> float | None:
        return 100 * self.came_back / self.contacted if self.contacted else None

    @property
    def control_rate(self) -> float | None:
        return 100 * self.control_came_back / self.control if self.control else None


def recall_results(*, now: datetime | None = None) -> list[RecallResult]:
    """Per playbook: members picked (intent to treat) and the control group, and how many of each
    came back within the window after the planned message."""
    now = now or timezone.now()
    days = RecallSettings.load().came_back_days
    came_back = MemberEvent.objects.filter(
        member=OuterRef("member_id"),
        kind__in=CAME_BACK_KINDS,
        occurred_at__gt=OuterRef("scheduled_for"),
        occurred_at__lte=OuterRef("scheduled_for") + timedelta(days=days),
    )
    rows = (
        Delivery.objects.filter(campaign__playbook__isnull=False)
        .exclude(skip_reason__in=["cancelled", "ended"])
        .order_by()
        .values("campaign__playbook__reason", "holdout")
        .annotate(n=Count("pk"), back=Count("pk", filter=Q(Exists(came_back))))
    )
    figures: dict[str, dict] = {}
    for row in rows:
        side = "control" if row["holdout"] else "treated"
        figures.setdefault(row["campaign__playbook__reason"], {})[side] = (row["n"], row["back"])
    results = []
    for reason in ChurnReason.values:
        if reason not in figures:
            continue
        n, back = figures[reason].get("treated", (0, 0))
        cn, cback = figures[reason].get("control", (0, 0))
        test = two_proportion_test(back, n, cback, cn)
        results.append(RecallResult(reason, n, back, cn, cback, (1 - test[1]) if test else None))
    return results
