"""The staff page of featured content and poll results."""

import pytest
from django.urls import reverse

from campaigns.ugc import services
from campaigns.ugc.models import Poll, PollOption, SubmissionImage
from tests.factories import MemberFactory
from tests.ugc.conftest import submit

pytestmark = pytest.mark.django_db

PAGE = reverse("ugc:featured")


def test_the_page_lists_featured_content_with_masked_names_and_poll_results(
    client, operator, django_assert_max_num_queries
):
    member = MemberFactory(name="王小明")
    shown, hidden = submit(member, title="芒果测评", text="很好喝"), submit(member, text="未精选")
    SubmissionImage.objects.create(submission=shown, url="https://cdn.example.com/a.jpg")
    services.submissions_approve(submission_ids=[shown.pk, hidden.pk], actor=operator)
    services.submissions_feature(submission_ids=[shown.pk], actor=operator)
    poll = Poll.objects.create(title="下一款口味")
    a = PollOption.objects.create(poll=poll, label="荔枝")
    PollOption.objects.create(poll=poll, label="杨梅")
    services.poll_open(poll=poll)
    services.poll_vote(poll_id=poll.pk, option_id=a.pk, member=member, source="s")
    client.force_login(operator)

    with django_assert_max_num_queries(15):
        response = client.get(PAGE)

    page = response.content.decode()
    assert response.status_code == 200
    assert "芒果测评" in page and "未精选" not in page
    assert "王**" in page and "王小明" not in page
    assert 'src="https://cdn.example.com/a.jpg"' in page
    assert "下一款口味" in page and 'id="poll-chart-' in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert '"votes": [1, 0]' in page


def test_the_page_speaks_chinese_for_chinese_staff(client, operator):
    client.force_login(operator)

    page = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "精选" in page


def test_staff_without_the_view_permission_and_anonymous_visitors_are_kept_out(client, db):
    from tests.factories import UserFactory

    assert client.get(PAGE).status_code == 302
    client.force_login(UserFactory(username="nobody"))
    assert client.get(PAGE).status_code == 403
