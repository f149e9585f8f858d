"""Read queries of member content and polls, shared by the admin, the staff page and the API."""

from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Count, Prefetch, QuerySet

from campaigns.ugc.models import Poll, PollOption, PollStatus, Submission, SubmissionImage

FEATURED_PAGE_SIZE = 48
RESULTS_POLLS = 6


def submissions_of_member(*, member_id: int) -> QuerySet[Submission]:
    """A member's submissions, newest first, with their photos."""
    return (
        Submission.objects.filter(member_id=member_id)
        .prefetch_related(Prefetch("images", queryset=SubmissionImage.objects.order_by("position")))
        .order_by("-id")
    )


def featured_submissions(*, limit: int = FEATURED_PAGE_SIZE) -> list[Submission]:
    """The featured content, most recently featured first, with the member and the photos."""
    return list(
        Submission.objects.filter(featured=True)
        .select_related("member")
        .prefetch_related(Prefetch("images", queryset=SubmissionImage.objects.order_by("position")))
        .order_by("-featured_at", "-id")[:limit]
    )


def polls_list(*, status: str | None = None) -> QuerySet[Poll]:
    """Polls that members can see (open or closed, never drafts), newest first, with their options."""
    polls = Poll.objects.exclude(status=PollStatus.DRAFT)
    if status:
        polls = polls.filter(status=status)
    return polls.prefetch_related(Prefetch("options", queryset=PollOption.objects.order_by("position", "id"))).order_by(
        "-id"
    )


@dataclass(frozen=True)
class OptionResult:
    option_id: int
    label: str
    votes: int
    proposed_by_member: bool


@dataclass(frozen=True)
class PollResults:
    poll: Poll
    options: list[OptionResult]
    total: int

    @property
    def winner_id(self) -> int | None:
        return self.poll.winner_id


def poll_results(*, poll: Poll, max_age: int = 0) -> PollResults:
    """Votes per option: one aggregate over the poll's votes index (about half a second at a
    million votes), or with `max_age` seconds the counts of the last aggregate at most that old,
    shared by every process through the cache: for pages many members refresh at once."""
    key = f"ugc:poll-results:v1:{poll.pk}"
    counts = cache.get(key) if max_age else None
    if counts is None:
        counts = dict(poll.votes.order_by().values_list("option_id").annotate(n=Count("id")))
        if max_age:
            cache.set(key, counts, max_age)
    options = [
        OptionResult(
            option_id=option.pk,
            label=option.label,
            votes=counts.get(option.pk, 0),
            proposed_by_member=option.proposer_id is not None,
        )
        for option in poll.options.order_by("position", "id")
    ]
    return PollResults(poll=poll, options=options, total=sum(counts.values()))


def polls_for_results_page(*, limit: int = RESULTS_POLLS) -> list[PollResults]:
    """The results of the open polls and the latest closed ones, for the staff page."""
    polls = list(Poll.objects.filter(status=PollStatus.OPEN).order_by("-id")[:limit])
    if len(polls) < limit:
        polls += Poll.objects.filter(status=PollStatus.CLOSED).order_by("-closed_at", "-id")[: limit - len(polls)]
    return [poll_results(poll=poll) for poll in polls]
