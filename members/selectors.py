"""Read queries shared by the admin, the pages, the API and the jobs."""

from collections.abc import Iterable, Iterator

from django.db.models import Max, Min

from members.models import Member

MEMBER_ID_RANGE_SIZE = 50_000


def member_id_ranges(size: int = MEMBER_ID_RANGE_SIZE) -> Iterator[tuple[int, int]]:
    """Consecutive (first_id, last_id) ranges covering every member, for batched jobs."""
    bounds = Member.objects.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return
    for first in range(bounds["low"], bounds["high"] + 1, size):
        yield first, min(first + size - 1, bounds["high"])


def member_ids_by_external_id(external_ids: Iterable[str]) -> dict[str, int]:
    """Map partner ids to member ids for the ones that exist."""
    wanted = list({external_id for external_id in external_ids if external_id})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 5_000):
        found.update(
            Member.objects.filter(external_id__in=wanted[start : start + 5_000]).values_list("external_id", "id")
        )
    return found
