"""Co-creation polls: one vote per member, live results, the winning proposer rewarded once."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.ugc import services
from campaigns.ugc.models import Poll, PollOption, PollStatus, PollVote
from campaigns.ugc.selectors import poll_results
from crm.core.exceptions import ApplicationError
from loyalty.models import Coupon, CouponBatch, PointsEntry
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def proposer(db):
    return MemberFactory()


@pytest.fixture
def poll(proposer):
    poll = Poll.objects.create(title="下一款口味", reward_points=300)
    PollOption.objects.create(poll=poll, label="荔枝", position=1)
    PollOption.objects.create(poll=poll, label="杨梅", position=2, proposer=proposer)
    PollOption.objects.create(poll=poll, label="青提", position=3)
    return services.poll_open(poll=poll)


def option(poll, label):
    return poll.options.get(label=label)


def vote(poll, label, member=None):
    return services.poll_vote(
        poll_id=poll.pk, option_id=option(poll, label).pk, member=member or MemberFactory(), source="mini_program"
    )


def test_a_draft_poll_needs_two_options_to_open():
    poll = Poll.objects.create(title="t")
    PollOption.objects.create(poll=poll, label="only one")

    with pytest.raises(ApplicationError):
        services.poll_open(poll=poll)
    assert Poll.objects.get(pk=poll.pk).status == PollStatus.DRAFT


def test_one_vote_per_member_the_same_vote_again_is_a_replay_another_is_refused(poll):
    member = MemberFactory()

    first, created = vote(poll, "杨梅", member)
    again, created_again = vote(poll, "杨梅", member)
    with pytest.raises(ApplicationError) as caught:
        vote(poll, "荔枝", member)

    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert caught.value.extra == {"option_id": option(poll, "杨梅").pk}
    assert PollVote.objects.filter(member=member).count() == 1


def test_votes_are_refused_for_an_option_of_another_poll_a_draft_or_after_the_end(poll):
    other = Poll.objects.create(title="other")
    stranger = PollOption.objects.create(poll=other, label="x")

    with pytest.raises(ValidationError):
        services.poll_vote(poll_id=poll.pk, option_id=stranger.pk, member=MemberFactory(), source="s")
    with pytest.raises(ApplicationError):
        services.poll_vote(poll_id=other.pk, option_id=stranger.pk, member=MemberFactory(), source="s")
    Poll.objects.filter(pk=poll.pk).update(closes_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(ApplicationError):
        vote(poll, "荔枝")
    assert not PollVote.objects.exists()


def test_results_count_the_votes_as_they_come(poll):
    vote(poll, "杨梅"), vote(poll, "杨梅"), vote(poll, "青提")

    results = poll_results(poll=poll)

    assert [(row.label, row.votes) for row in results.options] == [("荔枝", 0), ("杨梅", 2), ("青提", 1)]
    assert results.total == 3
    assert [row.proposed_by_member for row in results.options] == [False, True, False]


def test_closing_picks_the_winner_and_rewards_its_proposer_once(poll, proposer, supervisor):
    batch = CouponBatch.objects.create(name="共创奖励", value=20, valid_until=timezone.now() + timedelta(days=30))
    Poll.objects.filter(pk=poll.pk).update(reward_coupon_batch=batch)
    vote(poll, "杨梅"), vote(poll, "杨梅"), vote(poll, "荔枝")

    result = services.poll_close(poll=poll, actor=supervisor)
    again = services.poll_close(poll=poll, actor=supervisor)

    assert (result.rewarded, again.rewarded) == (True, False)
    poll.refresh_from_db()
    assert (poll.status, poll.winner, poll.closed_by) == (PollStatus.CLOSED, option(poll, "杨梅"), supervisor)
    entry = PointsEntry.objects.get(member=proposer)
    assert (entry.amount, entry.idempotency_key) == (300, services.poll_reward_key(poll.pk))
    assert "杨梅" in entry.reason
    assert Coupon.objects.filter(member=proposer, batch=batch).count() == 1
    with pytest.raises(ApplicationError):
        vote(poll, "荔枝")


def test_a_tie_goes_to_the_option_listed_first_and_a_brand_option_rewards_nobody(poll, supervisor):
    vote(poll, "荔枝"), vote(poll, "杨梅")

    result = services.poll_close(poll=poll, actor=supervisor)

    assert result.poll.winner.label == "荔枝"
    assert not result.rewarded
    assert not PointsEntry.objects.exists()


def test_a_poll_without_votes_closes_without_a_winner(poll, supervisor):
    result = services.poll_close(poll=poll, actor=supervisor)

    assert result.poll.winner is None and result.poll.status == PollStatus.CLOSED
