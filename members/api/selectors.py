"""Read queries of the member endpoints.

The member read shows what the other apps know of a member: points (loyalty), value layer and
lifecycle stage (segmentation), tier and badges. Each is joined only where that app has it in
this version of the code, so the endpoint keeps its documented shape (null or empty) until then.
"""

from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet

from members.models import Member


def _has_relation(name: str) -> bool:
    try:
        Member._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def member_optional_relations() -> list[str]:
    """The one-to-one rows of other apps that a member read joins, where they exist."""
    return [name for name in ("points_account", "score") if _has_relation(name)]


def member_detail_queryset() -> QuerySet[Member]:
    return Member.objects.select_related(*member_optional_relations())


def member_list(*, filters: dict) -> QuerySet[Member]:
    """Members matching the API's list filters; every filter maps to an index of Member."""
    queryset = Member.objects.filter(external_id__isnull=False)
    if "channel" in filters:
        queryset = queryset.filter(channel=filters["channel"])
    if "city" in filters:
        queryset = queryset.filter(city=filters["city"])
    if "joined_after" in filters:
        queryset = queryset.filter(joined_at__gte=filters["joined_after"])
    if "joined_before" in filters:
        queryset = queryset.filter(joined_at__lt=filters["joined_before"])
    if "active_after" in filters:
        queryset = queryset.filter(last_active_at__gte=filters["active_after"])
    if "external_id" in filters:
        queryset = queryset.filter(external_id__in=filters["external_id"])
    if "value_layer" in filters and _has_relation("score"):
        queryset = queryset.filter(score__value_layer=filters["value_layer"])
    if "lifecycle_stage" in filters and _has_relation("score"):
        queryset = queryset.filter(score__lifecycle_stage=filters["lifecycle_stage"])
    return queryset
