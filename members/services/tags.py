"""Putting manual tags on members and taking them off, set-based.

A selection in the admin can be "all 300,000 members in this filter", so members are never
loaded into Python: adding is one INSERT … SELECT … ON CONFLICT DO NOTHING over the members'
query (rows already tagged are skipped by the unique (member, tag) constraint, also under
concurrent requests), removing is one DELETE with the same query as a subquery.
"""

import logging
from collections.abc import Iterable, Iterator, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.core.exceptions import ApplicationError
from members.models import Member, MemberTag, Tag, TagKind

logger = logging.getLogger(__name__)

# Ids passed as a list are written in slices so the statement stays under SQLite's and
# PostgreSQL's limits on bound parameters.
MEMBER_IDS_SLICE = 5_000


@transaction.atomic
def tags_get_or_create(*, names: Iterable[str], actor: AbstractBaseUser | None = None) -> list[Tag]:
    """The manual tags with these names, creating those that do not exist yet."""
    wanted = sorted({name.strip() for name in names if name.strip()})
    existing = {tag.name: tag for tag in Tag.objects.filter(name__in=wanted)}
    new_tags = [Tag(name=name, kind=TagKind.MANUAL) for name in wanted if name not in existing]
    for tag in new_tags:
        tag.full_clean(validate_unique=False)
    # ignore_conflicts: a colleague may create the same tag at the same moment.
    Tag.objects.bulk_create(new_tags, ignore_conflicts=True)
    tags = list(Tag.objects.filter(name__in=wanted).order_by("name"))
    if new_tags:
        logger.info("tags created actor=%s tags=%s", _actor_id(actor), [t.pk for t in tags if t.name not in existing])
    return tags


@transaction.atomic
def member_tags_add(
    *,
    tags: Sequence[Tag],
    actor: AbstractBaseUser | None,
    member_ids: Iterable[int] | None = None,
    queryset: QuerySet[Member] | None = None,
) -> int:
    """Tag the members (given by ids or by a queryset) with manual `tags`.

    Returns the number of member-tag links created; members that already had a tag, and ids
    of members that do not exist, are skipped.
    """
    _check_manual(tags)
    if not tags:
        return 0
    table = connection.ops.quote_name(MemberTag._meta.db_table)
    tag_table = connection.ops.quote_name(Tag._meta.db_table)
    tag_placeholders = ", ".join(["%s"] * len(tags))
    created = 0
    with connection.cursor() as cursor:
        for members in _member_querysets(member_ids=member_ids, queryset=queryset):
            # An explicit alias: SQLite does not name a subquery's column after a qualified one.
            members_sql, members_params = members.order_by().values(member_pk=F("pk")).query.sql_with_params()
            # The WHERE clause is also what lets SQLite parse ON CONFLICT after INSERT … SELECT.
            cursor.execute(
                f"INSERT INTO {table} (member_id, tag_id, created_at) "
                f"SELECT m.member_pk, t.id, %s FROM ({members_sql}) AS m CROSS JOIN {tag_table} AS t "
                f"WHERE t.id IN ({tag_placeholders}) "
                "ON CONFLICT (member_id, tag_id) DO NOTHING",
                [
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                    *members_params,
                    *(tag.pk for tag in tags),
                ],
            )
            created += cursor.rowcount
    logger.info("member tags added actor=%s tags=%s links=%s", _actor_id(actor), [t.pk for t in tags], created)
    return created


@transaction.atomic
def member_tags_remove(
    *,
    tags: Sequence[Tag],
    actor: AbstractBaseUser | None,
    member_ids: Iterable[int] | None = None,
    queryset: QuerySet[Member] | None = None,
) -> int:
    """Take manual `tags` off the members; returns the number of member-tag links removed."""
    _check_manual(tags)
    if not tags:
        return 0
    removed = 0
    for members in _member_querysets(member_ids=member_ids, queryset=queryset):
        deleted, _by_model = MemberTag.objects.filter(tag__in=tags, member__in=members.order_by().values("pk")).delete()
        removed += deleted
    logger.info("member tags removed actor=%s tags=%s links=%s", _actor_id(actor), [t.pk for t in tags], removed)
    return removed


def _check_manual(tags: Sequence[Tag]) -> None:
    automatic = sorted(tag.name for tag in tags if tag.kind != TagKind.MANUAL)
    if automatic:
        raise ApplicationError(
            _("These tags are set automatically from behaviour and cannot be changed by hand: %(tags)s")
            % {"tags": ", ".join(automatic)}
        )


def _member_querysets(
    *, member_ids: Iterable[int] | None, queryset: QuerySet[Member] | None
) -> Iterator[QuerySet[Member]]:
    if (member_ids is None) == (queryset is None):
        raise TypeError("Pass exactly one of member_ids and queryset.")
    if queryset is not None:
        yield queryset
        return
    ids = sorted(set(member_ids))
    for start in range(0, len(ids), MEMBER_IDS_SLICE):
        yield Member.objects.filter(pk__in=ids[start : start + MEMBER_IDS_SLICE])


def _actor_id(actor: AbstractBaseUser | None) -> int | None:
    return actor.pk if actor is not None else None
