"""Staff roles are installed by migration with least privilege."""

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission

from crm.roles import AUDITOR, OPERATOR, ROLE_PERMISSIONS, SUPERVISOR, sync_roles

pytestmark = pytest.mark.django_db


def _codenames(role: str) -> set[str]:
    return {
        f"{app_label}.{codename}"
        for app_label, codename in Group.objects.get(name=role).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_the_three_roles_exist_with_every_declared_permission():
    for role, declared in ROLE_PERMISSIONS.items():
        # A typo in crm/roles.py would silently grant nothing, so each name must resolve.
        assert _codenames(role) == set(declared), role


def test_an_operator_works_with_members_but_cannot_delete_them_or_see_full_phones(operator):
    assert operator.has_perms(["members.view_member", "members.change_member", "members.import_members"])
    assert not operator.has_perm("members.delete_member")
    assert not operator.has_perm("members.view_full_phone")
    assert not operator.has_perm("members.view_all_importjobs")
    assert not operator.has_perm("django_celery_beat.change_periodictask")


def test_a_supervisor_may_delete_see_full_phones_and_retime_schedules(supervisor):
    assert supervisor.has_perms(
        ["members.delete_member", "members.view_full_phone", "django_celery_beat.change_periodictask"]
    )
    assert not supervisor.has_perm("django_celery_beat.delete_periodictask")


def test_an_auditor_only_reads(auditor):
    permissions = Group.objects.get(name=AUDITOR).permissions.values_list("codename", flat=True)

    assert permissions
    assert all(codename.startswith("view_") for codename in permissions)
    assert auditor.has_perm("members.view_memberevent")
    assert not auditor.has_perm("members.export_members")


def test_no_role_manages_staff_accounts_or_events():
    # Accounts and permissions stay with superusers; the behaviour log is append-only.
    forbidden_apps = {"auth", "admin", "contenttypes", "sessions"}
    for role in (OPERATOR, SUPERVISOR, AUDITOR):
        granted = _codenames(role)
        assert not {perm for perm in granted if perm.split(".")[0] in forbidden_apps}, role
        assert not granted & {"members.add_memberevent", "members.change_memberevent", "members.delete_memberevent"}


def test_syncing_again_keeps_what_staff_granted():
    operator_group = Group.objects.get(name=OPERATOR)
    extra = Permission.objects.get(content_type__app_label="members", codename="delete_tag")
    operator_group.permissions.add(extra)

    sync_roles(apps)

    assert "members.delete_tag" in _codenames(OPERATOR)
    assert _codenames(OPERATOR) >= set(ROLE_PERMISSIONS[OPERATOR])
