"""Co-creation polls: opening, one vote per member, and closing with the winner's reward, once."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.ugc.models import Poll, PollOption, PollStatus, PollVote
from campaigns.ugc.services.submissions import require_staff_actor
from crm.core.exceptions import ApplicationError
from members.models import Member

logger = logging.getLogger(__name__)


def poll_reward_key(poll_id: int) -> str:
    return f"ugc-poll:{poll_id}:winner"


@transaction.atomic
def poll_open(*, poll: Poll) -> Poll:
    """Open a draft poll for votes; it needs at least two options."""
    poll = Poll.objects.select_for_update().get(pk=poll.pk)
    if poll.status != PollStatus.DRAFT:
        raise ApplicationError(_("Only a draft poll can be opened."))
    if poll.options.count() < 2:
        raise ApplicationError(_("A poll needs at least two options."))
    if poll.closes_at is not None and poll.closes_at <= timezone.now():
        raise ApplicationError(_("The end of voting is already past."))
    poll.status = PollStatus.OPEN
    poll.save(update_fields=["status", "updated_at"])
    return poll


def _lock_poll_shared(poll_id: int) -> Poll | None:
    """Read the poll under a lock that votes share with each other but that closing waits for.

    On PostgreSQL, FOR KEY SHARE: votes never wait for each other; poll_close's FOR UPDATE
    waits for the votes in flight, and a vote arriving while it closes waits and then sees the
    poll closed. (SQLite runs one writer at a time anyway.)
    """
    if connection.vendor != "postgresql":
        return Poll.objects.filter(pk=poll_id).first()
    rows = list(Poll.objects.raw(f"SELECT * FROM {Poll._meta.db_table} WHERE id = %s FOR KEY SHARE", [poll_id]))
    return rows[0] if rows else None


@transaction.atomic
def poll_vote(
    *, poll_id: int, option_id: int, member: Member, source: str, now: datetime | None = None
) -> tuple[PollVote, bool]:
    """Record a member's vote; return it and whether it is new.

    One vote per member and poll (a unique constraint): voting again for the same option returns
    the first vote; voting for another option is refused.
    """
    now = now or timezone.now()
    poll = _lock_poll_shared(poll_id)
    if poll is None:
        raise ApplicationError(_("No such poll."), extra={"poll_id": poll_id})
    if not PollOption.objects.filter(pk=option_id, poll_id=poll.pk).exists():
        raise ValidationError({"option_id": [_("This poll has no such option.")]})
    existing = PollVote.objects.filter(poll_id=poll.pk, member=member).first()
    if existing is None:
        if poll.status != PollStatus.OPEN or (poll.closes_at is not None and now >= poll.closes_at):
            raise ApplicationError(_("This poll is not open for votes."), extra={"status": poll.status})
        try:
            with transaction.atomic():
                return PollVote.objects.create(
                    poll_id=poll.pk, option_id=option_id, member=member, source=source, voted_at=now
                ), True
        except IntegrityError:
            # The same member's vote committed by a concurrent request.
            existing = PollVote.objects.get(poll_id=poll.pk, member=member)
    if existing.option_id != option_id:
        raise ApplicationError(
            _("This member has already voted in this poll."), extra={"option_id": existing.option_id}
        )
    return existing, False


@dataclass(frozen=True)
class PollCloseResult:
    poll: Poll
    rewarded: bool


@transaction.atomic
def poll_close(*, poll: Poll, actor: AbstractBaseUser, now: datetime | None = None) -> PollCloseResult:
    """Close an open poll, pick the winner and reward its proposer, once.

    The winner is the option with the most votes; a tie goes to the option listed first. Its
    proposer (if a member proposed it) gets the poll's points, by a ledger entry whose
    idempotency key is the poll's, and the poll's coupon if it has one. Closing a closed poll
    changes nothing and rewards nobody again.
    """
    require_staff_actor(actor)
    from loyalty.models import EntryKind
    from loyalty.services.points import points_credit
    from loyalty.services.rewards import coupons_issue

    now = now or timezone.now()
    poll = Poll.objects.select_for_update().get(pk=poll.pk)
    if poll.status == PollStatus.CLOSED:
        return PollCloseResult(poll=poll, rewarded=False)
    if poll.status != PollStatus.OPEN:
        raise ApplicationError(_("Only an open poll can be closed."))
    winner = (
        PollOption.objects.filter(poll=poll)
        .annotate(n=Count("votes"))
        .filter(n__gt=0)
        .order_by("-n", "position", "id")
        .select_related("proposer")
        .first()
    )
    poll.status = PollStatus.CLOSED
    poll.winner = winner
    poll.closed_at = now
    poll.closed_by = actor
    poll.save(update_fields=["status", "winner", "closed_at", "closed_by", "updated_at"])
    proposer = winner.proposer if winner is not None else None
    if proposer is None:
        return PollCloseResult(poll=poll, rewarded=False)
    reason = _("Co-creation: your proposal “%(option)s” won “%(poll)s”") % {"option": winner.label, "poll": poll.title}
    if poll.reward_points:
        points_credit(
            member=proposer,
            amount=poll.reward_points,
            reason=reason[:255],
            idempotency_key=poll_reward_key(poll.pk),
            kind=EntryKind.EARN,
            actor=actor,
            now=now,
        )
    if poll.reward_coupon_batch_id:
        coupons_issue(
            batch=poll.reward_coupon_batch, members=[proposer.pk], issue_key=poll_reward_key(poll.pk), now=now
        )
    logger.info("poll %s closed, option %s won, member %s rewarded", poll.pk, winner.pk, proposer.pk)
    return PollCloseResult(poll=poll, rewarded=bool(poll.reward_points or poll.reward_coupon_batch_id))
