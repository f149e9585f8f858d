"""Transactional notices to a given set of members, through the outbox (e.g. a crisis ticket's
announcement and solution timetable).

A notice is a campaign of the transactional category, so it is neither capped nor held for quiet
hours, yet every message is a Delivery row like any other: recorded, retried, counted. It needs no
approval of its own: whoever may send it (e.g. the crisis desk's operators) decided to, and its
campaign is created running, with that start recorded as its first status change.
"""

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignListMember,
    CampaignStatus,
    CampaignTransition,
    MessageCategory,
    MessageTemplate,
)
from campaigns.outbox import Plan, deliveries_plan
from campaigns.services import message_template_errors
from crm.core.exceptions import ApplicationError
from members.models import Member

NOTICE_LIFETIME = timedelta(days=3)


@transaction.atomic
def notice_send(
    *,
    name: str,
    members: QuerySet,
    channel: str,
    language: str,
    body: str,
    subject: str = "",
    step: str = "main",
    actor=None,
    now: datetime | None = None,
) -> tuple[Campaign, Plan]:
    """Queue one transactional message to each of `members` (a queryset of member ids); return
    the notice's campaign and what was planned. The message is checked like any template first
    (syntax, variables, SMS length), so a bad one is refused before anything is queued."""
    now = now or timezone.now()
    campaign = Campaign(
        name=name[:120],
        kind=CampaignKind.BROADCAST,
        category=MessageCategory.TRANSACTIONAL,
        channel=channel,
        language=language,
        starts_at=now,
        # A notice is moot after a few days: the outbox's scheduler then finishes it, and whatever
        # could not be sent by then is skipped as ended rather than sent late.
        ends_at=now + NOTICE_LIFETIME,
        created_by=actor,
        status=CampaignStatus.DRAFT,
    )
    template = MessageTemplate(campaign=campaign, channel=channel, language=language, subject=subject, body=body)
    errors = message_template_errors(template=template, campaign=campaign)
    if errors:
        raise ApplicationError(" ".join(errors), {"body": errors})
    campaign.status = CampaignStatus.RUNNING
    campaign.save()
    template.campaign = campaign
    template.save()
    CampaignTransition.objects.create(
        campaign=campaign,
        from_status=CampaignStatus.DRAFT,
        to_status=CampaignStatus.RUNNING,
        action="start",
        actor=actor,
        at=now,
        note=_("Transactional notice: sent at once, no approval needed."),
    )
    members_sql, members_params = members.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CampaignListMember._meta.db_table} (campaign_id, member_id) "
            f"SELECT %s, m.id FROM {Member._meta.db_table} m WHERE m.id IN ({members_sql})",
            [campaign.pk, *members_params],
        )
    return campaign, deliveries_plan(campaign=campaign, step=step, now=now)
