"""The member-content endpoints through the real stack: key scopes, validation, idempotency."""

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.ugc import services
from campaigns.ugc.models import Poll, PollOption, PollVote, SensitiveWord, Submission, SubmissionImage
from crm.models import Scope
from tests.api.conftest import assert_error
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

SUBMIT = "/api/v1/ugc/submissions/submit/"
LIST = "/api/v1/ugc/submissions/"
POLLS = "/api/v1/ugc/polls/"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def member(db):
    return MemberFactory(external_id="M0001234")


@pytest.fixture
def writer(make_client):
    return make_client([Scope.UGC_WRITE, Scope.UGC_READ])


@pytest.fixture
def poll(db):
    poll = Poll.objects.create(title="下一款口味")
    PollOption.objects.create(poll=poll, label="荔枝", position=1)
    PollOption.objects.create(poll=poll, label="杨梅", position=2, proposer=MemberFactory())
    return services.poll_open(poll=poll)


def review(**overrides):
    return {"member_external_id": "M0001234", "kind": "review", "text": "芒果味很好喝", "rating": 5, **overrides}


def test_a_review_with_photo_addresses_waits_for_moderation(writer, member):
    response = writer.post(SUBMIT, review(image_urls=["https://cdn.example.com/a.jpg"]), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["rating"], body["featured"]) == ("review", "pending", 5, False)
    assert body["images"] == [{"url": "https://cdn.example.com/a.jpg", "content_type": "", "size": None}]
    assert "flagged" not in body
    assert Submission.objects.get().member == member


def test_photos_can_be_uploaded_as_files_and_a_disguised_file_is_refused(writer, member):
    photo = SimpleUploadedFile("a.png", PNG, content_type="image/png")
    fake = SimpleUploadedFile("b.png", b"#!/bin/sh\nrm -rf /", content_type="image/png")

    ok = writer.post(SUBMIT, {"member_external_id": "M0001234", "kind": "image", "images": [photo]}, format="multipart")
    refused = writer.post(
        SUBMIT, {"member_external_id": "M0001234", "kind": "image", "images": [fake]}, format="multipart"
    )

    assert ok.status_code == 201, ok.content
    image = ok.json()["images"][0]
    assert (image["content_type"], image["size"]) == ("image/png", len(PNG))
    assert image["url"].startswith("http://testserver/") and image["url"].endswith(".png")
    body = assert_error(refused, 400, "invalid")
    assert "images.0" in body["fields"]
    assert Submission.objects.count() == 1
    SubmissionImage.objects.get().file.delete(save=False)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (review(rating=None), "rating"),
        (review(rating=9), "rating"),
        (review(kind="poem"), "kind"),
        (review(image_urls=["http://cdn.example.com/a.jpg"]), "images.0"),
        (review(image_urls=["https://x.example/a.jpg"] * 10), "image_urls"),
        (review(text="x" * 5001), "text"),
        ({"kind": "text", "text": "hi"}, "member_external_id"),
    ],
)
def test_bad_input_gets_a_400_naming_the_field_and_saves_nothing(writer, member, payload, field):
    body = assert_error(writer.post(SUBMIT, payload, format="json"), 400, "invalid")

    assert field in body["fields"], body
    assert not Submission.objects.exists()


def test_an_unknown_member_is_a_404(writer, db):
    assert_error(writer.post(SUBMIT, review(member_external_id="nobody"), format="json"), 404, "not_found")


def test_keys_without_the_ugc_scopes_get_403_and_no_key_401(make_client, member, client):
    reader = make_client([Scope.UGC_READ])
    other = make_client([Scope.MEMBERS_READ, Scope.EVENTS_WRITE])

    assert_error(reader.post(SUBMIT, review(), format="json"), 403, "permission_denied")
    assert_error(other.get(LIST, {"member_external_id": "M0001234"}), 403, "permission_denied")
    assert_error(other.get(POLLS), 403, "permission_denied")
    assert_error(client.post(SUBMIT, review(), content_type="application/json"), 401, "not_authenticated")
    assert not Submission.objects.exists()


def test_the_same_external_id_or_idempotency_key_records_one_submission(writer, member):
    first = writer.post(SUBMIT, review(external_id="r-1"), format="json")
    again = writer.post(SUBMIT, review(external_id="r-1", text="changed"), format="json")
    key = str(uuid.uuid4())
    keyed = writer.post(SUBMIT, review(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    replay = writer.post(SUBMIT, review(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    conflict = writer.post(SUBMIT, review(text="other"), format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["text"] == "芒果味很好喝"
    assert (keyed.status_code, replay.status_code) == (201, 201)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == keyed.json()
    assert_error(conflict, 409, "conflict")
    assert Submission.objects.count() == 2


def test_external_ids_are_per_partner(make_client, member):
    from crm.models import Partner

    pos = Partner.objects.create(name="POS", rate_limit_per_minute=0)
    shop_key = make_client([Scope.UGC_WRITE])
    pos_key = make_client([Scope.UGC_WRITE], for_partner=pos)

    a = shop_key.post(SUBMIT, review(external_id="1"), format="json")
    b = pos_key.post(SUBMIT, review(external_id="1"), format="json")

    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


def test_a_member_sees_their_submissions_newest_first_with_the_decision(
    writer, member, operator, django_assert_max_num_queries
):
    SensitiveWord.objects.create(word="加微信")
    ids = [writer.post(SUBMIT, review(text=f"第 {n} 条 加微信"), format="json").json()["id"] for n in range(3)]
    services.submissions_reject(submission_ids=[ids[0]], actor=operator, reason="含联系方式")
    MemberFactory(external_id="M2")

    with django_assert_max_num_queries(6):
        response = writer.get(LIST, {"member_external_id": "M0001234", "page_size": 2})
    rejected = writer.get(LIST, {"member_external_id": "M0001234", "status": "rejected"})

    body = response.json()
    assert [row["id"] for row in body["results"]] == [ids[2], ids[1]]
    assert body["next"]
    assert [(row["id"], row["reject_reason"]) for row in rejected.json()["results"]] == [(ids[0], "含联系方式")]
    assert writer.get(LIST, {"member_external_id": "M2"}).json()["results"] == []
    assert_error(writer.get(LIST, {"member_external_id": "nobody"}), 404, "not_found")
    assert_error(writer.get(LIST), 400, "invalid")


def test_open_and_closed_polls_are_listed_with_their_options_and_drafts_are_not(writer, poll):
    Poll.objects.create(title="草稿")

    body = writer.get(POLLS).json()

    assert [row["title"] for row in body["results"]] == ["下一款口味"]
    assert [(o["label"], o["proposed_by_member"]) for o in body["results"][0]["options"]] == [
        ("荔枝", False),
        ("杨梅", True),
    ]
    assert writer.get(POLLS, {"status": "closed"}).json()["results"] == []


def test_voting_once_per_member_replays_and_refusals(writer, poll, member):
    lychee, bayberry = poll.options.order_by("position")
    url = f"{POLLS}{poll.pk}/votes/"

    first = writer.post(url, {"member_external_id": "M0001234", "option_id": lychee.pk}, format="json")
    again = writer.post(url, {"member_external_id": "M0001234", "option_id": lychee.pk}, format="json")
    other = writer.post(url, {"member_external_id": "M0001234", "option_id": bayberry.pk}, format="json")
    stranger = writer.post(url, {"member_external_id": "M0001234", "option_id": 99999}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["option_id"] == lychee.pk
    assert assert_error(other, 422, "rejected")["extra"] == {"option_id": lychee.pk}
    assert "option_id" in assert_error(stranger, 400, "invalid")["fields"]
    assert_error(
        writer.post(f"{POLLS}999999/votes/", {"member_external_id": "M0001234", "option_id": 1}, format="json"),
        404,
        "not_found",
    )
    assert_error(writer.post(f"{POLLS}{2**63}/results/"), 405, "method_not_allowed")
    assert_error(writer.get(f"{POLLS}{2**64}/results/"), 404, "not_found")
    assert PollVote.objects.count() == 1


def test_results_are_live_and_show_the_winner_after_closing(writer, poll, member, supervisor):
    lychee, bayberry = poll.options.order_by("position")
    for _ in range(2):
        services.poll_vote(poll_id=poll.pk, option_id=bayberry.pk, member=MemberFactory(), source="s")
    url = f"{POLLS}{poll.pk}/results/"

    live = writer.get(url).json()
    services.poll_close(poll=poll, actor=supervisor)
    closed = writer.get(url).json()

    assert (live["status"], live["total"], live["winner_option_id"]) == ("open", 2, None)
    assert [(o["label"], o["votes"]) for o in live["options"]] == [("荔枝", 0), ("杨梅", 2)]
    assert (closed["status"], closed["winner_option_id"]) == ("closed", bayberry.pk)
    closed_vote = writer.post(
        f"{POLLS}{poll.pk}/votes/", {"member_external_id": "M0001234", "option_id": lychee.pk}, format="json"
    )
    assert_error(closed_vote, 422, "rejected")


def test_results_are_shared_for_a_few_seconds_and_then_counted_again(writer, poll, member):
    from django.core.cache import cache

    lychee = poll.options.order_by("position").first()
    url = f"{POLLS}{poll.pk}/results/"
    before = writer.get(url).json()["total"]
    services.poll_vote(poll_id=poll.pk, option_id=lychee.pk, member=member, source="s")

    shared = writer.get(url).json()["total"]
    cache.delete(f"ugc:poll-results:v1:{poll.pk}")  # what the 5 seconds' expiry does
    recounted = writer.get(url).json()["total"]

    assert (before, shared, recounted) == (0, 0, 1)
