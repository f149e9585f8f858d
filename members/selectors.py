"""Read queries shared by the admin, the pages, the API and the jobs."""

import unicodedata
from collections.abc import Iterable, Iterator

import phonenumbers
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet

from members.models import Member, MemberEvent, MemberTag, Tag

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
    if connection.vendor == "postgresql" and wanted:
        # One array parameter: an IN list of 1,000 placeholders costs more to build, quote and
        # plan (~6 ms of CPU for an API batch of events) than the lookup itself.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT external_id, id FROM {Member._meta.db_table} WHERE external_id = ANY(%s::text[])", [wanted]
            )
            return dict(cursor.fetchall())
    for start in range(0, len(wanted), 5_000):
        found.update(
            Member.objects.filter(external_id__in=wanted[start : start + 5_000]).values_list("external_id", "id")
        )
    return found


# Filter choices are read from an index, never with SELECT DISTINCT over the whole table, and
# cached briefly: a city or source that first appears shows up in the filter within minutes.
DISTINCT_CHOICES_CACHE_SECONDS = 300
DISTINCT_CHOICES_LIMIT = 1_000
MEMBER_CITIES_CACHE_KEY = "members:selectors:cities"
EVENT_SOURCES_CACHE_KEY = "members:selectors:event-sources"


def _distinct_values(*, table: str, column: str, limit: int = DISTINCT_CHOICES_LIMIT) -> list[str]:
    """Distinct non-empty values of an indexed column, by a "loose index scan".

    Each step of the recursive CTE asks the index for the smallest value above the previous
    one, so the cost grows with the number of distinct values, not with the rows (SELECT
    DISTINCT city over a million members reads every row). Portable to SQLite and PostgreSQL.
    """
    table, column = connection.ops.quote_name(table), connection.ops.quote_name(column)
    sql = f"""
        WITH RECURSIVE found(value, depth) AS (
            SELECT MIN({column}), 1 FROM {table}
            UNION ALL
            SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > found.value), found.depth + 1
            FROM found
            WHERE found.value IS NOT NULL AND found.depth <= %s
        )
        SELECT value FROM found WHERE value IS NOT NULL AND value <> ''
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()][:limit]


def member_city_choices() -> list[str]:
    """The cities members live in, for the admin filter (uses the (city, id) index)."""
    return cache.get_or_set(
        MEMBER_CITIES_CACHE_KEY,
        lambda: _distinct_values(table=Member._meta.db_table, column="city"),
        DISTINCT_CHOICES_CACHE_SECONDS,
    )


def event_source_choices() -> list[str]:
    """The systems that reported events (uses the unique (source, external_id) index)."""
    return cache.get_or_set(
        EVENT_SOURCES_CACHE_KEY,
        lambda: _distinct_values(table=MemberEvent._meta.db_table, column="source"),
        DISTINCT_CHOICES_CACHE_SECONDS,
    )


def phone_to_e164(text: str) -> str | None:
    """A phone number typed by staff (+86, spaces, dashes, full-width digits) as E.164, or None."""
    try:
        number = phonenumbers.parse(unicodedata.normalize("NFKC", text), "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def members_search(*, queryset: QuerySet[Member], term: str) -> QuerySet[Member]:
    """The member whose phone or member number is exactly `term`, else members whose name starts with it.

    Identifiers are looked up first (both unique, at most two rows) and win over names. Asking
    for all three in one OR makes PostgreSQL combine bitmaps and visit the table for every
    candidate: at a million members, counting the matches of a one-character name took ~70 ms
    that way and ~3 ms as a prefix scan of the name index alone (varchar_pattern_ops, for
    LIKE 'term%'). Nothing here is a '%term%' scan.
    """
    term = term.strip()
    if not term:
        return queryset
    exact = Q(external_id=term)
    phone = phone_to_e164(term)
    if phone is not None:
        exact |= Q(phone=phone)
    exact_ids = list(Member.objects.filter(exact).values_list("pk", flat=True)[:2])
    if exact_ids:
        return queryset.filter(pk__in=exact_ids)
    return queryset.filter(name__startswith=term)


def member_latest_events(*, member_id: int, limit: int = 20) -> QuerySet[MemberEvent]:
    """The member's most recent events, newest first (uses the (member, occurred_at) index)."""
    return MemberEvent.objects.filter(member_id=member_id).order_by("-occurred_at", "-id")[:limit]


def member_tag_list(*, member_id: int) -> QuerySet[Tag]:
    return Tag.objects.filter(membertag__member_id=member_id).order_by("name")


def tag_member_counts(*, tag_ids: Iterable[int]) -> dict[int, int]:
    """How many members carry each tag, counted from the (tag, member) index."""
    rows = (
        MemberTag.objects.filter(tag_id__in=list(tag_ids))
        .values("tag_id")
        .annotate(members=Count("*"))
        .order_by()
        .values_list("tag_id", "members")
    )
    return dict(rows)
