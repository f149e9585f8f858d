"""The moderation queue, sensitive words and polls in the admin, per role."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from campaigns.ugc import services
from campaigns.ugc.models import (
    ModerationDecision,
    Poll,
    PollOption,
    PollStatus,
    SensitiveWord,
    Submission,
    SubmissionStatus,
)
from members.models import MemberEvent
from tests.factories import MemberFactory
from tests.ugc.conftest import submit

pytestmark = pytest.mark.django_db

QUEUE = reverse("admin:ugc_submission_changelist")
WORDS = reverse("admin:ugc_sensitiveword_changelist")
POLLS = reverse("admin:ugc_poll_changelist")


def act(client, url, action, objects, **data):
    return client.post(url, {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objects], **data}, follow=True)


def test_the_queue_shows_flagged_submissions_with_their_words_in_bounded_queries(
    client, operator, member, django_assert_max_num_queries
):
    SensitiveWord.objects.create(word="加微信")
    for n in range(30):
        submit(member, text=f"第 {n} 条" + ("，加微信" if n % 3 == 0 else ""))
    client.force_login(operator)

    with django_assert_max_num_queries(12):
        response = client.get(QUEUE, {"status__exact": "pending", "flagged__exact": "1"})

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("⚑ 加微信") == 10
    assert member.external_id in page and member.name not in page


def test_an_operator_approves_in_bulk_and_the_decisions_name_them(client, operator, member):
    submissions = [submit(member, text=f"{n}") for n in range(3)]
    client.force_login(operator)

    response = act(client, QUEUE, "approve", submissions)

    assert "3 submissions approved." in response.content.decode()
    assert set(ModerationDecision.objects.values_list("actor", "action")) == {(operator.pk, "approve")}
    assert MemberEvent.objects.filter(member=member, kind="ugc").count() == 3


def test_rejecting_asks_for_a_reason_first_and_refuses_a_blank_one(client, operator, member):
    submission = submit(member)
    client.force_login(operator)

    form = act(client, QUEUE, "reject", [submission])
    blank = act(client, QUEUE, "reject", [submission], apply="1", reason="   ")
    done = act(client, QUEUE, "reject", [submission], apply="1", reason="含联系方式")

    assert "Reason for the rejection" in form.content.decode()
    assert blank.status_code == 200 and "This field is required." in blank.content.decode()
    assert "1 submission rejected." in done.content.decode()
    submission.refresh_from_db()
    assert (submission.status, submission.reject_reason) == (SubmissionStatus.REJECTED, "含联系方式")


def test_featuring_is_an_operator_action_and_auditors_cannot_moderate(client, operator, auditor, member):
    submission = submit(member)
    services.submissions_approve(submission_ids=[submission.pk], actor=operator)

    client.force_login(auditor)
    assert client.get(QUEUE).status_code == 200
    refused = act(client, QUEUE, "feature", [submission])
    submission.refresh_from_db()
    assert not submission.featured
    assert refused.status_code == 200

    client.force_login(operator)
    act(client, QUEUE, "feature", [submission])
    submission.refresh_from_db()
    assert submission.featured


def test_supervisors_keep_the_word_list_and_operators_only_read_it(client, operator, supervisor):
    add = reverse("admin:ugc_sensitiveword_add")

    client.force_login(operator)
    assert client.get(WORDS).status_code == 200
    assert client.post(add, {"word": "刷单", "is_active": "on"}).status_code == 403

    client.force_login(supervisor)
    response = client.post(add, {"word": "刷单", "is_active": "on", "note": ""})
    assert response.status_code == 302
    assert SensitiveWord.objects.filter(word="刷单").exists()


def test_operators_open_polls_but_only_supervisors_close_them(client, operator, supervisor):
    proposer = MemberFactory()
    poll = Poll.objects.create(title="下一款口味", reward_points=100)
    PollOption.objects.create(poll=poll, label="A", proposer=proposer)
    PollOption.objects.create(poll=poll, label="B")

    client.force_login(operator)
    act(client, POLLS, "open_polls", [poll])
    poll.refresh_from_db()
    assert poll.status == PollStatus.OPEN
    services.poll_vote(poll_id=poll.pk, option_id=poll.options.get(label="A").pk, member=MemberFactory(), source="s")
    act(client, POLLS, "close_polls", [poll])
    poll.refresh_from_db()
    assert poll.status == PollStatus.OPEN

    client.force_login(supervisor)
    response = act(client, POLLS, "close_polls", [poll])
    poll.refresh_from_db()
    assert poll.status == PollStatus.CLOSED and poll.winner.label == "A"
    assert "“A” won" in response.content.decode()
    assert client.get(reverse("admin:ugc_poll_change", args=[poll.pk])).status_code == 200


def test_the_queue_is_searched_by_submission_number_member_number_or_the_senders_id(client, operator):
    alice, bob = MemberFactory(external_id="A-1"), MemberFactory(external_id="B-2")
    first, second = submit(alice, text="一"), submit(bob, text="二")
    Submission.objects.filter(pk=second.pk).update(external_id="shop-77")
    client.force_login(operator)

    def found(term):
        page = client.get(QUEUE, {"q": term}).content.decode()
        return {pk for pk in (first.pk, second.pk) if f"/admin/ugc/submission/{pk}/change/" in page}

    assert found("A-1") == {first.pk}
    assert found("shop-77") == {second.pk}
    assert found(str(second.pk)) == {second.pk}
    assert found("nobody") == set()
