"""Real parallel connections against PostgreSQL: approvals pay once, one vote per member,
closing a poll rewards once."""

from collections import Counter

import pytest

from campaigns.ugc import services
from campaigns.ugc.models import ModerationDecision, Poll, PollOption, PollVote, SubmissionStatus
from loyalty.models import EntryKind, PointsAccount, PointsEntry
from members.models import MemberEvent
from tests.factories import MemberFactory, UserFactory
from tests.loyalty.test_concurrency import in_parallel, outcome
from tests.ugc.conftest import submit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_same_submissions_approved_by_eight_moderators_at_once_pay_once(ugc_rule, eager_tasks):
    member = MemberFactory()
    submissions = [submit(member, text=f"第 {n} 条") for n in range(5)]
    moderators = [UserFactory(username=f"mod{n}", roles=["Operator"]) for n in range(8)]
    ids = [s.pk for s in submissions]

    # Each moderator approves all five, in a different order, as a bulk action would.
    results = in_parallel(
        8, lambda i: services.submissions_approve(submission_ids=ids[i % 5 :] + ids[: i % 5], actor=moderators[i])
    )

    assert sum(results) == 5, results
    assert MemberEvent.objects.filter(member=member).count() == 5
    assert ModerationDecision.objects.count() == 5
    assert (
        list(PointsEntry.objects.filter(member=member, kind=EntryKind.EARN).values_list("amount", flat=True))
        == [20] * 5
    )
    assert PointsAccount.objects.get(member=member).balance == 100
    assert set(submissions[0].__class__.objects.values_list("status", flat=True)) == {SubmissionStatus.APPROVED}


def test_a_member_voting_twenty_times_at_once_has_one_vote():
    poll = Poll.objects.create(title="口味")
    first = PollOption.objects.create(poll=poll, label="A")
    PollOption.objects.create(poll=poll, label="B")
    services.poll_open(poll=poll)
    member = MemberFactory()

    results = in_parallel(
        20, lambda i: services.poll_vote(poll_id=poll.pk, option_id=first.pk, member=member, source="mini_program")
    )

    assert Counter(created for _vote, created in results) == {True: 1, False: 19}, results
    assert PollVote.objects.filter(poll=poll, member=member).count() == 1


def test_many_members_voting_at_once_are_all_counted():
    poll = Poll.objects.create(title="口味")
    option = PollOption.objects.create(poll=poll, label="A")
    PollOption.objects.create(poll=poll, label="B")
    services.poll_open(poll=poll)
    members = [MemberFactory() for _ in range(12)]

    results = in_parallel(
        12, lambda i: services.poll_vote(poll_id=poll.pk, option_id=option.pk, member=members[i], source="s")
    )

    assert [outcome(result) for result in results] == ["tuple"] * 12
    assert PollVote.objects.filter(poll=poll).count() == 12


def test_a_poll_closed_by_several_supervisors_at_once_rewards_the_winner_once():
    proposer = MemberFactory()
    poll = Poll.objects.create(title="口味", reward_points=300)
    winner = PollOption.objects.create(poll=poll, label="A", proposer=proposer)
    PollOption.objects.create(poll=poll, label="B")
    services.poll_open(poll=poll)
    services.poll_vote(poll_id=poll.pk, option_id=winner.pk, member=MemberFactory(), source="s")
    supervisors = [UserFactory(username=f"sup{n}", roles=["Supervisor"]) for n in range(6)]

    results = in_parallel(6, lambda i: services.poll_close(poll=poll, actor=supervisors[i]))

    assert Counter(result.rewarded for result in results) == {True: 1, False: 5}, results
    assert PointsAccount.objects.get(member=proposer).balance == 300
    assert PointsEntry.objects.filter(member=proposer).count() == 1


def test_a_partner_retrying_one_submission_ten_times_at_once_records_it_once():
    member = MemberFactory()

    results = in_parallel(
        10,
        lambda i: services.submission_create(
            member=member, kind="text", text="重试", source="p:1", external_id="post-9"
        ),
    )

    assert Counter(created for _submission, created in results) == {True: 1, False: 9}, results
    assert len({submission.pk for submission, _created in results}) == 1
