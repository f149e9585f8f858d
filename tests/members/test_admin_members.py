"""The member admin: roles, filters, search, sorting, query bounds and the detail page."""

import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm.core.admin import EstimatedCountPaginator
from members import selectors
from members.models import Channel, Member, MemberTag
from tests.factories import MemberEventFactory, MemberFactory, TagFactory

CHANGELIST = reverse("admin:members_member_changelist")


@pytest.fixture(autouse=True)
def _fresh_filter_choices():
    # Filter choices are cached across requests; each test starts from its own data.
    cache.delete_many([selectors.MEMBER_CITIES_CACHE_KEY, selectors.EVENT_SOURCES_CACHE_KEY])
    yield
    cache.delete_many([selectors.MEMBER_CITIES_CACHE_KEY, selectors.EVENT_SOURCES_CACHE_KEY])


def listed(response) -> list[int]:
    return [member.pk for member in response.context["cl"].result_list]


def order_param(client, field: str, *, descending: bool = False) -> str:
    """The changelist's ?o= value that sorts on `field` (its index among the columns)."""
    columns = list(client.get(CHANGELIST).context["cl"].list_display)
    return f"{'-' if descending else ''}{columns.index(field)}"


# Roles -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "actions"),
    [
        ("operator", {"add_tags", "remove_tags", "export_csv", "export_xlsx"}),
        # Giving points and issuing coupons in bulk: loyalty's actions, for supervisors only.
        ("supervisor", {"add_tags", "remove_tags", "grant_points", "issue_coupons", "export_csv", "export_xlsx"}),
        ("auditor", set()),
    ],
)
def test_changelist_loads_for_each_role_with_its_actions(client, request, role, actions):
    client.force_login(request.getfixturevalue(role))
    MemberFactory.create_batch(3)

    response = client.get(CHANGELIST)

    assert response.status_code == 200
    action_form = response.context["action_form"]  # None when the role may run no action
    offered = {name for name, _label in action_form.fields["action"].choices if name} if action_form else set()
    assert offered == actions
    # Bulk delete is not offered even to supervisors, who may delete members one by one.
    assert "delete_selected" not in offered


@pytest.mark.django_db
def test_phones_are_masked_in_the_list_unless_the_role_may_see_them(client, operator, auditor, supervisor):
    MemberFactory(phone="+8613812345678")

    for user in (operator, auditor):
        client.force_login(user)
        content = client.get(CHANGELIST).content.decode()
        assert "138****5678" in content
        assert "13812345678" not in content and "138 1234 5678" not in content

    client.force_login(supervisor)
    assert "13812345678" in client.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_import_button_only_for_roles_that_may_import(client, operator, auditor):
    try:
        import_url = reverse("admin:members_importjob_add")
    except Exception:  # the ImportJob admin is not registered yet
        pytest.skip("the ImportJob admin is not registered")

    client.force_login(operator)
    assert f'href="{import_url}?target=members"' in client.get(CHANGELIST).content.decode()
    client.force_login(auditor)
    assert f'href="{import_url}?target=members"' not in client.get(CHANGELIST).content.decode()


# Query bounds ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "",
        "?channel__exact=wecom&o=-9",
        "?city=上海&active=30d",
        "?tag={tag}&joined_at__gte=2020-01-01",
        "?q=13800000001",
        "?q=王",
        # Facets would count every filter choice over the table; they stay off even if asked for.
        "?_facets=1&channel__exact=wecom",
    ],
)
def test_changelist_query_count_is_bounded_and_never_counts_the_whole_table(
    client, operator, django_assert_max_num_queries, query
):
    tag = TagFactory(name="vip")
    members = MemberFactory.create_batch(30, channel=Channel.WECOM)
    for member in members[:10]:
        MemberTag.objects.create(member=member, tag=tag)
    client.force_login(operator)
    client.get(CHANGELIST)  # session, permissions and filter choices warm

    with django_assert_max_num_queries(10) as captured:
        response = client.get(CHANGELIST + query.format(tag=tag.pk))

    assert response.status_code == 200
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the paginator counts the filtered rows"
    # Every count is capped by the paginator: COUNT(*) over a LIMITed subquery.
    assert all(f"LIMIT {EstimatedCountPaginator.exact_limit + 1}" in sql for sql in counts), counts
    assert not any("DISTINCT" in q["sql"].upper() for q in captured.captured_queries)
    assert not any("LIKE '%" in q["sql"] for q in captured.captured_queries)


@pytest.mark.postgres
@pytest.mark.django_db
def test_above_the_exact_limit_the_count_is_the_planners_estimate(client, operator, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 5)
    MemberFactory.create_batch(12)
    client.force_login(operator)

    with CaptureQueriesContext(connection) as captured:
        response = client.get(CHANGELIST)

    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 6" in sql for sql in counts)
    assert any(q["sql"].startswith("EXPLAIN") for q in captured.captured_queries)
    assert "about" in response.content.decode()


# Filters, search and sorting ----------------------------------------------------------------


@pytest.mark.django_db
def test_tag_filter_lists_members_with_the_tag_once(client, operator):
    vip, new = TagFactory(name="vip"), TagFactory(name="new")
    both, only_vip, only_new = MemberFactory(), MemberFactory(), MemberFactory()
    MemberFactory()
    for member, tag in [(both, vip), (both, new), (only_vip, vip), (only_new, new)]:
        MemberTag.objects.create(member=member, tag=tag)
    client.force_login(operator)

    response = client.get(CHANGELIST, {"tag": vip.pk})

    assert sorted(listed(response)) == sorted([both.pk, only_vip.pk])
    tag_filter = response.context["cl"].filter_specs[0]
    offered = [str(choice["display"]) for choice in tag_filter.choices(response.context["cl"])][1:]
    assert offered == sorted(offered) and {"new", "vip"} <= set(offered)


@pytest.mark.django_db
def test_invalid_tag_value_is_rejected_not_crashing(client, operator):
    TagFactory(name="vip")
    client.force_login(operator)
    response = client.get(CHANGELIST, {"tag": "x"})
    assert response.status_code == 302 and "e=1" in response["Location"]


@pytest.mark.django_db
def test_channel_and_city_filters(client, operator):
    shanghai_wecom = MemberFactory(city="上海", channel=Channel.WECOM)
    MemberFactory(city="上海", channel=Channel.APP)
    MemberFactory(city="北京", channel=Channel.WECOM)
    client.force_login(operator)

    response = client.get(CHANGELIST, {"city": "上海", "channel__exact": "wecom"})

    assert listed(response) == [shanghai_wecom.pk]


@pytest.mark.django_db
def test_city_choices_come_from_the_index_skip_blanks_and_are_cached(client, operator):
    MemberFactory(city="杭州")
    MemberFactory(city="上海")
    MemberFactory(city="上海")
    MemberFactory(city="")

    assert selectors.member_city_choices() == sorted(["上海", "杭州"])
    MemberFactory(city="成都")
    # Cached briefly: a new city shows up once the cache expires.
    assert "成都" not in selectors.member_city_choices()
    cache.delete(selectors.MEMBER_CITIES_CACHE_KEY)
    assert "成都" in selectors.member_city_choices()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("band", "expected"),
    [
        ("7d", {"today"}),
        ("30d", {"today", "twenty_days"}),
        ("30-90d", {"sixty_days"}),
        ("90d+", {"two_hundred_days"}),
        ("never", {"never"}),
    ],
)
def test_last_active_filter_bands(client, operator, band, expected):
    now = timezone.now()
    members = {
        "today": MemberFactory(),
        "twenty_days": MemberFactory(),
        "sixty_days": MemberFactory(),
        "two_hundred_days": MemberFactory(),
        "never": MemberFactory(),
    }
    for key, days in [("today", 0), ("twenty_days", 20), ("sixty_days", 60), ("two_hundred_days", 200)]:
        type(members[key]).objects.filter(pk=members[key].pk).update(last_active_at=now - timedelta(days=days))
    client.force_login(operator)

    response = client.get(CHANGELIST, {"active": band})

    assert set(listed(response)) == {members[key].pk for key in expected}


@pytest.mark.django_db
def test_joined_date_filter(client, operator):
    recent = MemberFactory(joined_at=timezone.now() - timedelta(days=2))
    MemberFactory(joined_at=timezone.now() - timedelta(days=400))
    client.force_login(operator)

    since = (timezone.localdate() - timedelta(days=7)).isoformat()
    response = client.get(CHANGELIST, {"joined_at__gte": since})

    assert listed(response) == [recent.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["13812345678", "+86 138-1234-5678", "138 1234 5678", "１３８１２３４５６７８"])
def test_search_by_phone_normalizes_the_term(client, operator, typed):
    wanted = MemberFactory(phone="+8613812345678")
    MemberFactory(phone="+8613812345679")
    client.force_login(operator)

    assert listed(client.get(CHANGELIST, {"q": typed})) == [wanted.pk]


@pytest.mark.django_db
def test_search_by_member_number_is_exact_and_by_name_is_a_prefix(client, operator):
    wang = MemberFactory(name="王小明", external_id="A100")
    MemberFactory(name="李王", external_id="A1001")
    client.force_login(operator)

    assert listed(client.get(CHANGELIST, {"q": "A100"})) == [wang.pk]
    # A name containing the term elsewhere is not found: no '%term%' scan.
    assert listed(client.get(CHANGELIST, {"q": "王"})) == [wang.pk]
    assert listed(client.get(CHANGELIST, {"q": "小明"})) == []


@pytest.mark.django_db
def test_an_exact_identifier_wins_over_name_prefixes_and_filters_still_apply(client, operator):
    numbered = MemberFactory(name="张三", external_id="VIP", city="上海")
    MemberFactory(name="VIP客户", external_id="B2")
    client.force_login(operator)

    assert listed(client.get(CHANGELIST, {"q": "VIP"})) == [numbered.pk]
    assert listed(client.get(CHANGELIST, {"q": "VIP", "city": "北京"})) == []
    assert len(listed(client.get(CHANGELIST, {"q": "VIP客"}))) == 1


@pytest.mark.django_db
def test_sorting_on_rollups(client, operator):
    low, high, middle = MemberFactory(), MemberFactory(), MemberFactory()
    for member, spent, orders in [(low, "10.00", 1), (high, "900.00", 7), (middle, "100.00", 3)]:
        type(member).objects.filter(pk=member.pk).update(total_spent=Decimal(spent), orders_count=orders)
    client.force_login(operator)

    now = timezone.now()
    for member, days in [(low, 3), (high, 1), (middle, 2)]:
        type(member).objects.filter(pk=member.pk).update(last_active_at=now - timedelta(days=days))

    by_spent_desc = client.get(CHANGELIST, {"o": order_param(client, "total_spent", descending=True)})
    by_orders_asc = client.get(CHANGELIST, {"o": order_param(client, "orders_count")})
    by_active_desc = client.get(CHANGELIST, {"o": order_param(client, "last_active", descending=True)})

    assert listed(by_spent_desc) == [high.pk, middle.pk, low.pk]
    assert listed(by_orders_asc) == [low.pk, middle.pk, high.pk]
    assert listed(by_active_desc) == [high.pk, middle.pk, low.pk]
    assert (now - timedelta(days=1)).astimezone(timezone.get_current_timezone()).strftime(
        "%Y-%m-%d %H:%M"
    ) in by_active_desc.content.decode()


@pytest.mark.django_db
def test_ties_are_broken_in_the_direction_of_the_sort(client, operator):
    # ORDER BY channel ASC, id ASC reads the (channel, id) index in one pass.
    first, second = MemberFactory(channel=Channel.APP), MemberFactory(channel=Channel.APP)
    client.force_login(operator)

    ascending = client.get(CHANGELIST, {"o": order_param(client, "channel")})
    descending = client.get(CHANGELIST, {"o": order_param(client, "channel", descending=True)})

    assert listed(ascending) == [first.pk, second.pk]
    assert listed(descending) == [second.pk, first.pk]
    assert ascending.context["cl"].queryset.query.order_by == ("channel", "pk")


@pytest.mark.django_db
def test_name_is_not_sortable(client, operator):
    # Its index serves prefix search only; sorting a million names would sort the table.
    client.force_login(operator)
    cl = client.get(CHANGELIST).context["cl"]
    assert "display_name" not in cl.sortable_by
    assert set(cl.sortable_by) <= {
        "city",
        "channel",
        "joined",
        "last_active",
        "last_purchase",
        "orders_count",
        "total_spent",
    }


@pytest.mark.django_db
def test_rows_link_to_the_member_page_keeping_the_filters(client, operator):
    member = MemberFactory(city="上海")
    client.force_login(operator)

    content = client.get(CHANGELIST, {"city": "上海"}).content.decode()
    popup = client.get(CHANGELIST, {"_popup": "1", "_to_field": "id"}).content.decode()

    change = reverse("admin:members_member_change", args=[member.pk])
    preserved = urlencode({"_changelist_filters": urlencode({"city": "上海"})})
    assert f'href="{change}?{preserved}"' in content
    assert f'value="{member.pk}" class="action-select"' in content
    # A raw-id lookup popup keeps Django's link, which hands the member to the opener.
    assert "data-popup-opener" in popup


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_rows_render_as_djangos_generic_rendering_would(client, request, role):
    member = MemberFactory(name="<b>王</b>", city="", channel=Channel.MINI_PROGRAM, phone="+8613812345678")
    Member.objects.filter(pk=member.pk).update(
        total_spent=Decimal("1234.50"), orders_count=3, last_active_at=timezone.now()
    )
    client.force_login(request.getfixturevalue(role))

    cl = client.get(CHANGELIST).context["cl"]
    ours = cl.rendered_results["results"][0]
    theirs = list(items_for_result(cl, cl.result_list[0], None))

    def text_and_class(cell: str) -> tuple[str, str]:
        return re.sub(r"<[^>]+>", "", cell), re.search(r'class="([^"]*)"', cell).group(1).replace(" nowrap", "")

    assert [text_and_class(cell) for cell in ours] == [text_and_class(cell) for cell in theirs]
    assert "&lt;b&gt;王&lt;/b&gt;" in ours[1]


# Detail page -------------------------------------------------------------------------------


def change_url(member) -> str:
    return reverse("admin:members_member_change", args=[member.pk])


@pytest.mark.django_db
def test_detail_page_shows_profile_rollups_tags_and_the_latest_events(client, operator):
    member = MemberFactory(name="张三", phone="+8613812345678", city="杭州")
    MemberTag.objects.create(member=member, tag=TagFactory(name="复购客"))
    start = timezone.now() - timedelta(days=30)
    for day in range(25):
        MemberEventFactory(
            member=member,
            occurred_at=start + timedelta(days=day),
            external_id=f"day-{day:02d}",
            source=f"src-{day:02d}",
        )
    client.force_login(operator)

    response = client.get(change_url(member))

    assert response.status_code == 200
    glance = response.context["member_glance"]
    assert [event.source for event in glance["events"]] == [f"src-{day:02d}" for day in range(24, 4, -1)]
    content = response.content.decode()
    assert "复购客" in content
    assert "src-24" in content and "src-04" not in content
    assert f"?member__id__exact={member.pk}" in content


@pytest.mark.django_db
def test_detail_page_masks_the_phone_and_makes_it_read_only_without_permission(client, operator, auditor):
    member = MemberFactory(phone="+8613812345678")

    for user in (operator, auditor):
        client.force_login(user)
        response = client.get(change_url(member))
        content = response.content.decode()
        assert "138****5678" in content
        assert "13812345678" not in content and "138 1234 5678" not in content
        assert "phone" not in response.context["adminform"].form.fields


@pytest.mark.django_db
def test_supervisor_sees_and_may_edit_the_full_phone(client, supervisor):
    member = MemberFactory(phone="+8613812345678")
    client.force_login(supervisor)

    response = client.get(change_url(member))

    assert "phone" in response.context["adminform"].form.fields
    assert "13812345678" in response.content.decode()


@pytest.mark.django_db
def test_operator_edits_profile_but_not_rollups_or_member_number(client, operator):
    member = MemberFactory(external_id="P-1", name="旧名", phone="+8613812345678")
    type(member).objects.filter(pk=member.pk).update(orders_count=4)
    client.force_login(operator)
    form = client.get(change_url(member)).context["adminform"].form
    assert "external_id" not in form.fields and "orders_count" not in form.fields

    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(name="新名", gender="female", channel="wecom", joined_at_0="2024-01-02", joined_at_1="10:00:00")
    response = client.post(change_url(member), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert (member.name, member.external_id, str(member.phone), member.orders_count) == (
        "新名",
        "P-1",
        "+8613812345678",
        4,
    )


@pytest.mark.django_db
def test_auditor_gets_a_read_only_page_without_tag_buttons(client, auditor):
    member = MemberFactory()
    client.force_login(auditor)

    response = client.get(change_url(member))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert 'value="add_tags"' not in response.content.decode()
    assert client.post(change_url(member), {"name": "x"}).status_code == 403


# Header ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_branded_header_and_language_switcher(client, operator):
    client.force_login(operator)

    content = client.get(reverse("admin:index")).content.decode()
    assert "Member Ops CRM" in content
    assert f'action="{reverse("set_language")}"' in content
    assert 'value="zh-hans"' in content and 'value="en"' in content

    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": CHANGELIST})
    assert response.status_code == 302 and response["Location"] == CHANGELIST
    assert '<html lang="zh-hans"' in client.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_language_follows_the_browser(client, operator):
    client.force_login(operator)
    response = client.get(CHANGELIST, headers={"accept-language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-hans"' in response.content.decode()
