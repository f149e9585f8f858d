"""Every write to campaigns goes through these functions: editing drafts, templates, and the
status machine (a plain transition table, applied under a row lock and recorded)."""

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns.models import (
    JOURNEY_KINDS,
    SELF_TARGETING_KINDS,
    Campaign,
    CampaignKind,
    CampaignListMember,
    CampaignStatus,
    CampaignTransition,
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    MessageCategory,
    MessageTemplate,
    SkipReason,
)
from campaigns.offers import multiplier_window_sync
from campaigns.selectors import campaign_audience_sample, campaign_template
from campaigns.templating import message_context, template_errors
from crm.core.exceptions import ApplicationError
from members.models import Member

logger = logging.getLogger(__name__)

CHANGE_PERMISSION = "campaigns.change_campaign"
APPROVE_PERMISSION = "campaigns.approve_campaign"
S = CampaignStatus


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str
    label: str
    # Permission a staff member needs; None: staff may not do it (only the scheduler may).
    permission: str | None
    # Whether the scheduler (no actor) may do it.
    system: bool = False


TRANSITIONS: dict[str, Transition] = {
    "submit": Transition(frozenset({S.DRAFT}), S.AWAITING_APPROVAL, _("Submit for approval"), CHANGE_PERMISSION),
    "withdraw": Transition(frozenset({S.AWAITING_APPROVAL}), S.DRAFT, _("Withdraw to draft"), CHANGE_PERMISSION),
    "approve": Transition(frozenset({S.AWAITING_APPROVAL}), S.SCHEDULED, _("Approve"), APPROVE_PERMISSION),
    "reject": Transition(frozenset({S.AWAITING_APPROVAL}), S.DRAFT, _("Send back to draft"), APPROVE_PERMISSION),
    "start": Transition(frozenset({S.SCHEDULED}), S.RUNNING, _("Start"), None, system=True),
    # Anyone who may edit campaigns may pull the brake; only a supervisor releases it. The health
    # alarms pause and resume promotions without an actor (campaigns_pause_promotions).
    "pause": Transition(frozenset({S.SCHEDULED, S.RUNNING}), S.PAUSED, _("Pause"), CHANGE_PERMISSION, system=True),
    # Back to running; a campaign paused before it started goes back to scheduled (see below).
    "resume": Transition(frozenset({S.PAUSED}), S.RUNNING, _("Resume"), APPROVE_PERMISSION, system=True),
    "finish": Transition(frozenset({S.RUNNING, S.PAUSED}), S.FINISHED, _("Finish"), APPROVE_PERMISSION, system=True),
    "cancel": Transition(
        frozenset({S.DRAFT, S.AWAITING_APPROVAL, S.SCHEDULED, S.RUNNING, S.PAUSED}),
        S.CANCELLED,
        _("Cancel"),
        APPROVE_PERMISSION,
    ),
}
EDITABLE_STATUSES = frozenset({S.DRAFT})
# Journeys and recall run for months: staff retime and edit them while paused, and a supervisor's
# resume puts the change live (as an approval does for a draft).
LONG_RUNNING_KINDS = JOURNEY_KINDS | {CampaignKind.RECALL}


def campaign_editable(*, status: str, kind: str) -> bool:
    return status in EDITABLE_STATUSES or (status == S.PAUSED and kind in LONG_RUNNING_KINDS)


_NUMBER_SPLIT = re.compile(r"[\s,;，；]+")
_LIST_CHUNK = 500


def campaign_actions_allowed(*, campaign: Campaign, user) -> list[str]:
    """The actions this staff member may take on the campaign in its current status."""
    return [
        name
        for name, t in TRANSITIONS.items()
        if campaign.status in t.sources and t.permission is not None and user.has_perm(t.permission)
    ]


@transaction.atomic
def campaign_save(*, campaign: Campaign, actor=None) -> Campaign:
    """Create or change a campaign; only drafts may change."""
    if campaign.pk is not None:
        current, kind = Campaign.objects.select_for_update().values_list("status", "kind").get(pk=campaign.pk)
        if not campaign_editable(status=current, kind=kind):
            raise ApplicationError(str(_("Only a draft can be changed; withdraw it to draft first.")))
    elif actor is not None and campaign.created_by_id is None:
        campaign.created_by = actor
    campaign.status = S.DRAFT if campaign.pk is None else campaign.status
    campaign.full_clean()
    campaign.save()
    logger.info("campaign saved id=%s actor=%s", campaign.pk, getattr(actor, "pk", None))
    return campaign


def _sample_contexts(campaign: Campaign) -> list[dict]:
    """A real member of the audience when there is one, and a sample member with a long name."""
    members = []
    real = campaign_audience_sample(campaign=campaign)
    if real is not None:
        members.append(real)
    members.append(Member(name="欧阳娜娜娜", external_id="M000000000", city="乌鲁木齐"))
    return [message_context(member=member, campaign=campaign) for member in members]


def message_template_errors(*, template: MessageTemplate, campaign: Campaign) -> list[str]:
    return template_errors(
        channel=template.channel, subject=template.subject, body=template.body, contexts=_sample_contexts(campaign)
    )


@transaction.atomic
def message_template_save(*, template: MessageTemplate, actor=None) -> MessageTemplate:
    """Create or change a template of a draft campaign; syntax, variables and length are checked."""
    campaign = Campaign.objects.select_for_update().get(pk=template.campaign_id)
    if not campaign_editable(status=campaign.status, kind=campaign.kind):
        raise ApplicationError(str(_("Only a draft's messages can be changed.")))
    if template.variant_id is not None and template.variant.campaign_id != campaign.pk:
        raise ApplicationError(str(_("That variant belongs to another campaign.")))
    errors = message_template_errors(template=template, campaign=campaign)
    if errors:
        raise ApplicationError(" ".join(errors), {"template": errors})
    template.full_clean()
    template.save()
    return template


def parse_member_numbers(text: str) -> list[str]:
    return list(dict.fromkeys(n for n in _NUMBER_SPLIT.split(text or "") if n))


def campaign_list_resolve(*, campaign: Campaign) -> list[str]:
    """Resolve an uploaded list to members (set-based, in chunks); return the unknown numbers."""
    numbers = parse_member_numbers(campaign.member_numbers)
    CampaignListMember.objects.filter(campaign=campaign).delete()
    table = connection.ops.quote_name(CampaignListMember._meta.db_table)
    members = connection.ops.quote_name(Member._meta.db_table)
    found: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(numbers), _LIST_CHUNK):
            chunk = numbers[start : start + _LIST_CHUNK]
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (campaign_id, member_id) SELECT %s, m.id FROM {members} m "
                f"WHERE m.external_id IN ({placeholders}) ON CONFLICT (campaign_id, member_id) DO NOTHING",
                [campaign.pk, *chunk],
            )
            found.update(Member.objects.filter(external_id__in=chunk).values_list("external_id", flat=True))
    return [n for n in numbers if n not in found]


def _check_ready(campaign: Campaign) -> list[str]:
    """Everything that must be right before a campaign may be approved and scheduled."""
    problems: list[str] = []
    has_audience = campaign.segment_id is not None or bool(campaign.member_numbers.strip())
    if not has_audience and campaign.kind not in SELF_TARGETING_KINDS:
        problems.append(str(_("Choose a segment or give a list of member numbers.")))
    if campaign.segment_id is not None and campaign.member_numbers.strip():
        problems.append(str(_("Choose either a segment or a list of member numbers, not both.")))
    if campaign.kind == CampaignKind.DOUBLE_POINTS and (campaign.ends_at is None or campaign.offer_multiplier <= 1):
        problems.append(str(_("A double-points campaign needs an end and a multiplier above 1.")))
    variant_ids = list(campaign.variants.values_list("pk", flat=True))
    step_keys = [""]
    if campaign.kind in JOURNEY_KINDS:
        step_keys = list(campaign.steps.filter(is_active=True).values_list("key", flat=True))
        if not step_keys:
            problems.append(str(_("Add at least one journey step.")))

    def covered_for(step: str) -> bool:
        return campaign_template(campaign=campaign, step=step) is not None or bool(
            variant_ids
            and all(campaign_template(campaign=campaign, variant_id=v, step=step) is not None for v in variant_ids)
        )

    # A double-points campaign without an audience only opens the window; it sends nothing.
    needs_message = has_audience or campaign.kind != CampaignKind.DOUBLE_POINTS
    if needs_message and not all(covered_for(step) for step in step_keys):
        problems.append(
            str(
                _("Write the %(channel)s message in %(language)s.")
                % {"channel": campaign.get_channel_display(), "language": campaign.get_language_display()}
            )
        )
    for other in campaign.templates.all():
        for error in message_template_errors(template=other, campaign=campaign):
            problems.append(f"{other}: {error}")
    return problems


@transaction.atomic
def campaign_transition(
    *, campaign: Campaign, action: str, actor=None, note: str = "", now: datetime | None = None
) -> CampaignTransition:
    """Move a campaign through the transition table, or refuse with ApplicationError.

    `actor=None` is the scheduler, which may only take the system actions (start, finish).
    """
    transition = TRANSITIONS.get(action)
    if transition is None:
        raise ApplicationError(str(_("Unknown action.")))
    if actor is None and not transition.system:
        raise ApplicationError(str(_("Only staff may do this.")))
    if actor is not None and (transition.permission is None or not actor.has_perm(transition.permission)):
        raise ApplicationError(str(_("You are not allowed to do this.")))
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if locked.status not in transition.sources:
        raise ApplicationError(
            str(_("A campaign that is %(status)s cannot be moved this way.") % {"status": locked.get_status_display()})
        )
    from_status = locked.status
    target = transition.target
    if action == "resume":
        # Paused before it started: its deliveries were never planned, so it goes back to
        # scheduled and the scheduler starts it.
        paused = locked.transitions.filter(action="pause").order_by("-at", "-pk").first()
        if paused is not None and paused.from_status == S.SCHEDULED:
            target = S.SCHEDULED
    now = now or timezone.now()
    notes = [note] if note else []
    if action in {"submit", "approve"}:
        if locked.member_numbers.strip() and action == "submit":
            unknown = campaign_list_resolve(campaign=locked)
            if unknown:
                notes.append(
                    str(_("%(count)d unknown member numbers ignored, e.g. %(sample)s"))
                    % {"count": len(unknown), "sample": ", ".join(unknown[:5])}
                )
        problems = _check_ready(locked)
        if problems:
            raise ApplicationError(" ".join(problems), {"problems": problems})
    if action == "start" and (locked.segment_id is not None or locked.member_numbers.strip()):
        # Journeys and recall plan their own deliveries every day (campaigns.journeys, recall).
        from campaigns.outbox import deliveries_plan

        locked.status = transition.target
        locked.save(update_fields=["status", "updated_at"])
        plan = deliveries_plan(campaign=locked, now=now)
        notes.append(f"planned={plan.planned} queued={plan.queued} skipped={plan.skipped}")
    if action in {"cancel", "finish"}:
        # Nothing of a closed campaign goes out later; the rows stay, with the reason, for the counts.
        Delivery.objects.filter(campaign=locked, status=DeliveryStatus.QUEUED).update(
            status=DeliveryStatus.SKIPPED,
            skip_reason=SkipReason.CANCELLED if action == "cancel" else SkipReason.ENDED,
        )
    record = CampaignTransition.objects.create(
        campaign=locked,
        from_status=from_status,
        to_status=target,
        action=action,
        actor=actor,
        at=now,
        note="\n".join(notes),
    )
    locked.status = target
    locked.save(update_fields=["status", "updated_at"])
    multiplier_window_sync(campaign=locked)
    campaign.status = locked.status
    logger.info("campaign transition id=%s action=%s actor=%s", locked.pk, action, getattr(actor, "pk", None))
    return record


def campaigns_start_due(*, now: datetime | None = None) -> int:
    """Start scheduled campaigns whose start has come (planning their deliveries); finish those
    whose end has passed. One transaction per campaign; returns how many changed."""
    now = now or timezone.now()
    changed = 0
    due = Campaign.objects.filter(status=S.SCHEDULED, starts_at__lte=now).order_by("starts_at", "pk")
    for campaign in due.only("pk"):
        try:
            campaign_transition(campaign=campaign, action="start", now=now)
            changed += 1
        except ApplicationError:  # someone paused or cancelled it meanwhile
            continue
    ended = Campaign.objects.filter(status__in=[S.RUNNING, S.PAUSED], ends_at__lte=now).order_by("pk")
    for campaign in ended.only("pk"):
        try:
            campaign_transition(campaign=campaign, action="finish", note=str(_("End of schedule.")), now=now)
            changed += 1
        except ApplicationError:
            continue
    return changed


# Brakes for the health alarms -----------------------------------------------------------------


def campaigns_pause_promotions(*, reason: str, actor=None) -> list[int]:
    """Pause every promotional campaign that is running or scheduled (a crisis, a wave of group
    exits): each move is recorded as a transition with the reason. Transactional campaigns
    (notices, receipts) keep going. Returns the ids paused, for campaigns_resume."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(str(_("Give a reason.")))
    paused = []
    candidates = Campaign.objects.filter(
        category=MessageCategory.PROMOTIONAL, status__in=[S.RUNNING, S.SCHEDULED]
    ).order_by("pk")
    for campaign in candidates.only("pk"):
        try:
            campaign_transition(campaign=campaign, action="pause", actor=actor, note=reason)
        except ApplicationError:  # finished, cancelled or paused by someone else meanwhile
            continue
        paused.append(campaign.pk)
    logger.info("promotions paused count=%s", len(paused))
    return paused


def campaigns_resume(*, campaign_ids, reason: str, actor=None) -> list[int]:
    """Resume those of `campaign_ids` that are still paused (one that staff cancelled or that
    ended meanwhile stays as it is); returns the ids resumed."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(str(_("Give a reason.")))
    resumed = []
    for campaign in Campaign.objects.filter(pk__in=list(campaign_ids), status=S.PAUSED).order_by("pk").only("pk"):
        try:
            campaign_transition(campaign=campaign, action="resume", actor=actor, note=reason)
        except ApplicationError:
            continue
        resumed.append(campaign.pk)
    logger.info("campaigns resumed count=%s", len(resumed))
    return resumed


# Channel fallback ------------------------------------------------------------------------------


@transaction.atomic
def channel_fallback_activate(*, channel: str, reason: str, now: datetime | None = None) -> str | None:
    """Send `channel`'s waiting messages through its configured fallback channel from now on.

    Returns the fallback channel, or None when none is configured (nothing changes then)."""
    config = ChannelConfig.objects.select_for_update().filter(channel=channel).first()
    if config is None or not config.fallback_channel:
        logger.warning("channel fallback requested without a fallback channel=%s", channel)
        return None
    if not config.fallback_active:
        config.fallback_active = True
        config.fallback_since = now or timezone.now()
    config.fallback_reason = (reason or "")[:200]
    config.save(update_fields=["fallback_active", "fallback_since", "fallback_reason", "updated_at"])
    logger.info("channel fallback on channel=%s via=%s", channel, config.fallback_channel)
    return config.fallback_channel


@transaction.atomic
def channel_fallback_clear(*, channel: str) -> None:
    """Messages of `channel` go through the channel itself again."""
    updated = ChannelConfig.objects.filter(channel=channel, fallback_active=True).update(
        fallback_active=False, fallback_reason="", fallback_since=None, updated_at=timezone.now()
    )
    if updated:
        logger.info("channel fallback off channel=%s", channel)
