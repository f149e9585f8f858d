"""Read queries about campaigns and the outbox, shared by the admin, tasks and (later) the API."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from campaigns.models import Campaign, CampaignListMember, CampaignVariant, Delivery, DeliveryStatus, MessageTemplate
from campaigns.rules import two_proportion_test
from members.models import EventKind, Member, MemberEvent
from members.models_layers import SegmentMember


def campaign_template(
    *,
    campaign: Campaign,
    channel: str | None = None,
    language: str | None = None,
    variant_id: int | None = None,
    step: str = "",
) -> MessageTemplate | None:
    """The message for a channel and language: the variant's own if it has one, else the shared one;
    within each, the journey step's own if it has one, else the one for every step."""
    templates = MessageTemplate.objects.filter(
        campaign=campaign, channel=channel or campaign.channel, language=language or campaign.language
    )
    steps = [step, ""] if step else [""]
    for scope in ([{"variant_id": variant_id}] if variant_id is not None else []) + [{"variant__isnull": True}]:
        for key in steps:
            found = templates.filter(step=key, **scope).first()
            if found is not None:
                return found
    return None


def campaign_audience_member_ids(*, campaign: Campaign) -> QuerySet:
    """Member ids of the audience: the segment's materialized members, or the resolved list."""
    if campaign.segment_id is not None:
        return SegmentMember.objects.filter(segment_id=campaign.segment_id).values_list("member_id", flat=True)
    return CampaignListMember.objects.filter(campaign=campaign).values_list("member_id", flat=True)


def campaign_audience_sample(*, campaign: Campaign) -> Member | None:
    """One real member of the audience (the lowest id), to validate and preview messages with."""
    if campaign.pk is None:
        return None
    member_id = campaign_audience_member_ids(campaign=campaign).order_by("member_id").first()
    return Member.objects.filter(pk=member_id).first() if member_id is not None else None


def delivery_counts(*, campaign: Campaign) -> dict:
    """Deliveries of a campaign by status, and the skipped ones by reason."""
    by_status = dict(
        Delivery.objects.filter(campaign=campaign).order_by().values_list("status").annotate(n=Count("pk"))
    )
    by_reason = dict(
        Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SKIPPED)
        .order_by()
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
    )
    return {"status": by_status, "skip_reason": by_reason}


_SENT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED)
_DELIVERED = (DeliveryStatus.DELIVERED, DeliveryStatus.OPENED, DeliveryStatus.CLICKED)
_OPENED = (DeliveryStatus.OPENED, DeliveryStatus.CLICKED)


@dataclass(frozen=True)
class ArmResult:
    """One arm of a campaign: a variant (or the whole campaign without variants) or the control group.

    Conversion is measured over every member assigned to the arm (intent to treat), so members the
    outbox skipped count too, as they do in the control group.
    """

    name: str
    is_control: bool
    assigned: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int
    uplift: float | None = None  # conversion rate minus the control group's, in percentage points
    confidence: float | None = None  # 1 - two-sided p-value of a two-proportion z-test

    @property
    def conversion_rate(self) -> float | None:
        return 100 * self.converted / self.assigned if self.assigned else None


def campaign_results(*, campaign: Campaign) -> list[ArmResult]:
    """Sent, delivered, opened, clicked and converted (a purchase within the conversion window
    after the planned send) per arm, with the uplift against the control group and its confidence."""
    purchase = MemberEvent.objects.filter(
        member_id=OuterRef("member_id"),
        kind=EventKind.PURCHASE,
        occurred_at__gte=OuterRef("scheduled_for"),
        occurred_at__lt=OuterRef("scheduled_for") + timedelta(days=campaign.conversion_days),
    )
    rows = (
        Delivery.objects.filter(campaign=campaign, step="main")
        .exclude(skip_reason__in=["cancelled", "ended"])
        .order_by()
        .values("variant_id", "holdout")
        .annotate(
            assigned=Count("pk"),
            sent=Count("pk", filter=Q(status__in=_SENT)),
            delivered=Count("pk", filter=Q(status__in=_DELIVERED)),
            opened=Count("pk", filter=Q(status__in=_OPENED)),
            clicked=Count("pk", filter=Q(status=DeliveryStatus.CLICKED)),
            converted=Count("pk", filter=Q(Exists(purchase))),
        )
    )
    names = dict(CampaignVariant.objects.filter(campaign=campaign).values_list("pk", "name"))
    arms = []
    control = None
    for row in sorted(rows, key=lambda r: (not r["holdout"], names.get(r["variant_id"], ""))):
        figures = {k: row[k] for k in ("assigned", "sent", "delivered", "opened", "clicked", "converted")}
        if row["holdout"]:
            control = ArmResult(name="control", is_control=True, **figures)
            arms.append(control)
        else:
            arms.append(ArmResult(name=names.get(row["variant_id"], "-"), is_control=False, **figures))
    if control is None:
        return arms
    compared = []
    for arm in arms:
        if arm.is_control:
            compared.append(arm)
            continue
        test = two_proportion_test(arm.converted, arm.assigned, control.converted, control.assigned)
        uplift = arm.conversion_rate - control.conversion_rate if control.assigned and arm.assigned else None
        compared.append(ArmResult(**{**arm.__dict__, "uplift": uplift, "confidence": (1 - test[1]) if test else None}))
    return compared
