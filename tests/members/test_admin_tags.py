"""Adding and removing tags: the services, the admin actions through the real views, TagAdmin."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.core.exceptions import ApplicationError
from members.models import Member, MemberTag, Tag, TagKind
from members.services import member_tags_add, member_tags_remove, tags_get_or_create
from tests.factories import MemberFactory, TagFactory

CHANGELIST = reverse("admin:members_member_changelist")


def tagged(tag: Tag) -> set[int]:
    return set(MemberTag.objects.filter(tag=tag).values_list("member_id", flat=True))


# Services ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_member_tags_add_by_ids_skips_links_that_exist_and_unknown_members(operator):
    vip = TagFactory(name="vip")
    first, second = MemberFactory(), MemberFactory()
    MemberTag.objects.create(member=first, tag=vip)

    created = member_tags_add(member_ids=[first.pk, second.pk, 999_999], tags=[vip], actor=operator)

    assert created == 1
    assert tagged(vip) == {first.pk, second.pk}


@pytest.mark.django_db
def test_member_tags_add_by_queryset_writes_every_member_and_tag_in_one_statement(operator):
    vip, new = TagFactory(name="vip"), TagFactory(name="new")
    shanghai = MemberFactory.create_batch(4, city="上海")
    MemberFactory(city="北京")

    with CaptureQueriesContext(connection) as captured:
        created = member_tags_add(queryset=Member.objects.filter(city="上海"), tags=[vip, new], actor=operator)

    assert created == 8
    assert tagged(vip) == tagged(new) == {member.pk for member in shanghai}
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO")


@pytest.mark.django_db
def test_member_tags_remove_only_removes_the_given_tags_from_the_given_members(operator):
    vip, new = TagFactory(name="vip"), TagFactory(name="new")
    kept, cleared = MemberFactory(city="北京"), MemberFactory(city="上海")
    for member in (kept, cleared):
        MemberTag.objects.create(member=member, tag=vip)
        MemberTag.objects.create(member=member, tag=new)

    removed = member_tags_remove(queryset=Member.objects.filter(city="上海"), tags=[vip], actor=operator)

    assert removed == 1
    assert tagged(vip) == {kept.pk}
    assert tagged(new) == {kept.pk, cleared.pk}


@pytest.mark.django_db
def test_automatic_tags_cannot_be_set_or_removed_by_hand(operator):
    automatic = TagFactory(name="流失预警", kind=TagKind.AUTOMATIC)
    member = MemberFactory()

    with pytest.raises(ApplicationError):
        member_tags_add(member_ids=[member.pk], tags=[automatic], actor=operator)
    with pytest.raises(ApplicationError):
        member_tags_remove(member_ids=[member.pk], tags=[automatic], actor=operator)
    assert not MemberTag.objects.exists()


@pytest.mark.django_db
def test_tags_get_or_create_creates_only_missing_manual_tags(operator):
    existing = TagFactory(name="vip")

    tags = tags_get_or_create(names=[" vip", "新客", "新客 ", ""], actor=operator)

    assert [tag.name for tag in tags] == ["vip", "新客"]
    assert tags[0].pk == existing.pk
    assert Tag.objects.get(name="新客").kind == TagKind.MANUAL


@pytest.mark.django_db
def test_exactly_one_of_member_ids_and_queryset(operator):
    tag = TagFactory()
    with pytest.raises(TypeError):
        member_tags_add(tags=[tag], actor=operator)
    with pytest.raises(TypeError):
        member_tags_add(member_ids=[1], queryset=Member.objects.all(), tags=[tag], actor=operator)


# Admin actions -----------------------------------------------------------------------------


def action_post(action: str, members, **extra) -> dict:
    return {
        "action": action,
        "index": "0",
        "select_across": "0",
        ACTION_CHECKBOX_NAME: [m.pk for m in members],
        **extra,
    }


@pytest.mark.django_db
def test_add_tags_action_asks_for_tags_then_applies_them(client, operator):
    vip = TagFactory(name="vip")
    TagFactory(name="流失预警", kind=TagKind.AUTOMATIC)
    chosen, other = MemberFactory.create_batch(2), MemberFactory()
    client.force_login(operator)

    page = client.post(CHANGELIST, action_post("add_tags", chosen))

    assert page.status_code == 200
    assert page.templates[0].name == "admin/members/member/tags_action.html"
    form = page.context["form"]
    # Automatic tags are not offered; operators may type new ones (they have members.add_tag).
    assert list(form.fields["tags"].queryset) == [vip]
    assert "new_tags" in form.fields

    response = client.post(CHANGELIST, action_post("add_tags", chosen, apply="1", tags=[vip.pk], new_tags="新客，复购"))

    assert response.status_code == 302
    assert tagged(vip) == {m.pk for m in chosen}
    assert tagged(Tag.objects.get(name="新客")) == tagged(Tag.objects.get(name="复购")) == {m.pk for m in chosen}
    assert other.pk not in tagged(vip)


@pytest.mark.django_db
def test_add_tags_rejects_typed_automatic_tags_and_empty_choices(client, operator):
    TagFactory(name="流失预警", kind=TagKind.AUTOMATIC)
    member = MemberFactory()
    client.force_login(operator)

    typed_automatic = client.post(CHANGELIST, action_post("add_tags", [member], apply="1", new_tags="流失预警"))
    nothing = client.post(CHANGELIST, action_post("add_tags", [member], apply="1"))

    assert typed_automatic.status_code == 200 and typed_automatic.context["form"].errors["new_tags"]
    assert nothing.status_code == 200 and nothing.context["form"].non_field_errors()
    assert not MemberTag.objects.exists()


@pytest.mark.django_db
def test_tag_actions_apply_to_every_member_matching_the_filter_with_select_across(client, operator):
    vip = TagFactory(name="vip")
    shanghai = MemberFactory.create_batch(3, city="上海")
    beijing = MemberFactory(city="北京")
    client.force_login(operator)
    url = CHANGELIST + "?city=上海"

    # The page sends the rows checked on screen plus select_across=1 for "select all N".
    data = action_post("add_tags", shanghai[:1], select_across="1", apply="1", tags=[vip.pk])
    response = client.post(url, data)

    assert response.status_code == 302
    assert tagged(vip) == {m.pk for m in shanghai}

    MemberTag.objects.create(member=beijing, tag=vip)
    client.post(url, action_post("remove_tags", shanghai[:1], select_across="1", apply="1", tags=[vip.pk]))
    assert tagged(vip) == {beijing.pk}


@pytest.mark.django_db
def test_remove_tags_action(client, supervisor):
    vip, new = TagFactory(name="vip"), TagFactory(name="new")
    member = MemberFactory()
    MemberTag.objects.create(member=member, tag=vip)
    MemberTag.objects.create(member=member, tag=new)
    client.force_login(supervisor)

    page = client.post(CHANGELIST, action_post("remove_tags", [member]))
    assert "new_tags" not in page.context["form"].fields
    client.post(CHANGELIST, action_post("remove_tags", [member], apply="1", tags=[vip.pk]))

    assert list(Tag.objects.filter(membertag__member=member)) == [new]


@pytest.mark.django_db
def test_from_the_member_page_the_action_returns_to_the_member_page(client, operator):
    vip = TagFactory(name="vip")
    member = MemberFactory()
    member_url = reverse("admin:members_member_change", args=[member.pk])
    client.force_login(operator)

    response = client.post(CHANGELIST, action_post("add_tags", [member], apply="1", tags=[vip.pk], _next=member_url))
    offsite = client.post(
        CHANGELIST, action_post("add_tags", [member], apply="1", tags=[vip.pk], _next="https://evil.example/")
    )

    assert response["Location"] == member_url
    assert offsite["Location"] == CHANGELIST
    assert tagged(vip) == {member.pk}


@pytest.mark.django_db
def test_auditor_cannot_run_tag_actions(client, auditor):
    vip = TagFactory(name="vip")
    member = MemberFactory()
    client.force_login(auditor)

    response = client.post(CHANGELIST, action_post("add_tags", [member], apply="1", tags=[vip.pk]))

    assert response.status_code in (200, 302)
    assert not MemberTag.objects.exists()


# TagAdmin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_tag_changelist_shows_member_counts_with_one_grouped_query(client, operator, django_assert_max_num_queries):
    tags = [TagFactory(name=f"tag-{n}") for n in range(5)]
    members = MemberFactory.create_batch(4)
    for n, tag in enumerate(tags):
        for member in members[:n]:
            MemberTag.objects.create(member=member, tag=tag)
    client.force_login(operator)
    url = reverse("admin:members_tag_changelist")
    client.get(url)

    with django_assert_max_num_queries(7) as captured:
        response = client.get(url)

    counts = {tag.name: tag.member_count for tag in response.context["cl"].result_list}
    assert {name: count for name, count in counts.items() if name.startswith("tag-")} == {
        f"tag-{n}": n for n in range(5)
    }
    assert sum("GROUP BY" in q["sql"] for q in captured.captured_queries) == 1
    assert f'href="{CHANGELIST}?tag={tags[3].pk}"' in response.content.decode()
