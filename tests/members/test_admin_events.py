"""The behaviour log in the admin: read-only for everyone, filterable, never counted in full."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from crm.core.admin import EstimatedCountPaginator
from members import selectors
from members.models import EventKind
from tests.factories import MemberEventFactory, MemberFactory

CHANGELIST = reverse("admin:members_memberevent_changelist")


@pytest.fixture(autouse=True)
def _fresh_filter_choices():
    cache.delete(selectors.EVENT_SOURCES_CACHE_KEY)
    yield
    cache.delete(selectors.EVENT_SOURCES_CACHE_KEY)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["operator", "supervisor", "auditor"])
def test_events_are_read_only_for_every_role(client, request, role):
    event = MemberEventFactory()
    client.force_login(request.getfixturevalue(role))

    listing = client.get(CHANGELIST)
    detail = client.get(reverse("admin:members_memberevent_change", args=[event.pk]))

    assert listing.status_code == 200 and detail.status_code == 200
    assert listing.context["has_add_permission"] is False
    assert detail.context["has_change_permission"] is False
    assert client.get(reverse("admin:members_memberevent_add")).status_code == 403
    assert client.post(reverse("admin:members_memberevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403


@pytest.mark.django_db
def test_filters_on_member_kind_and_source(client, operator, django_assert_max_num_queries):
    member = MemberFactory()
    wanted = MemberEventFactory(member=member, kind=EventKind.CHECK_IN, amount=None, source="wecom")
    MemberEventFactory(member=member, kind=EventKind.PURCHASE, source="wecom")
    MemberEventFactory(kind=EventKind.CHECK_IN, amount=None, source="wecom")
    MemberEventFactory(member=member, kind=EventKind.CHECK_IN, amount=None, source="pos")
    client.force_login(operator)
    client.get(CHANGELIST)

    with django_assert_max_num_queries(10) as captured:
        response = client.get(
            CHANGELIST, {"member__id__exact": member.pk, "kind__exact": "check_in", "source": "wecom"}
        )

    assert [event.pk for event in response.context["cl"].result_list] == [wanted.pk]
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all(f"LIMIT {EstimatedCountPaginator.exact_limit + 1}" in sql for sql in counts)


@pytest.mark.django_db
def test_source_choices_come_from_the_index():
    MemberEventFactory(source="shop")
    MemberEventFactory(source="pos")
    MemberEventFactory(source="shop")

    assert selectors.event_source_choices() == ["pos", "shop"]
