"""Read queries about campaigns and the outbox, shared by the admin, tasks and (later) the API."""

from django.db.models import Count, QuerySet

from campaigns.models import Campaign, CampaignListMember, Delivery, DeliveryStatus, MessageTemplate
from members.models import Member
from members.models_layers import SegmentMember


def campaign_template(
    *, campaign: Campaign, channel: str | None = None, language: str | None = None
) -> MessageTemplate | None:
    return MessageTemplate.objects.filter(
        campaign=campaign, channel=channel or campaign.channel, language=language or campaign.language
    ).first()


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
