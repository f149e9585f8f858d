"""Targets and alarm limits in the admin; alarms acknowledged and resolved from the changelist."""

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.health.models import Alarm, AlarmKind, HealthSettings, HealthSnapshot

pytestmark = pytest.mark.django_db
CHANGE = reverse("admin:health_healthsettings_change", args=[1])


def _form(**changes) -> dict:
    config = HealthSettings.load()
    data = {
        field.name: getattr(config, field.attname)
        for field in HealthSettings._meta.concrete_fields
        if field.editable and field.name not in {"id", "created_at", "updated_at"}
    }
    data["service_lead"] = data.pop("service_lead", None) or ""
    return {key: "" if value is None else value for key, value in {**data, **changes}.items()}


def test_the_settings_list_opens_the_one_row(client, operator):
    client.force_login(operator)
    response = client.get(reverse("admin:health_healthsettings_changelist"))
    assert response.status_code == 302 and response["Location"] == CHANGE
    assert client.get(CHANGE).status_code == 200


def test_a_supervisor_sets_a_target_and_a_limit(client, supervisor):
    client.force_login(supervisor)

    response = client.post(CHANGE, _form(activity_rate_target="18", exit_rate_max="6.5"))

    assert response.status_code == 302
    config = HealthSettings.load()
    assert (str(config.activity_rate_target), str(config.exit_rate_max)) == ("18.00", "6.50")


def test_out_of_range_values_are_field_errors_and_nothing_is_saved(client, supervisor):
    client.force_login(supervisor)

    response = client.post(CHANGE, _form(activity_rate_target="120", window_days="0"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"activity_rate_target", "window_days"}
    assert HealthSettings.load().window_days == 7


def test_an_operator_cannot_change_the_settings(client, operator):
    client.force_login(operator)
    assert client.post(CHANGE, _form(activity_rate_target="1")).status_code == 403
    assert str(HealthSettings.load().activity_rate_target) == "15.00"


def test_a_supervisor_resolves_alarms_from_the_changelist(client, supervisor):
    now = timezone.now()
    alarm = Alarm.objects.create(kind=AlarmKind.COMPLAINTS, raised_at=now, last_seen_at=now)
    client.force_login(supervisor)
    url = reverse("admin:health_alarm_changelist")

    response = client.post(url, {"action": "resolve", "_selected_action": [alarm.pk]})

    assert response.status_code == 302
    alarm.refresh_from_db()
    assert (alarm.resolved_by, alarm.acknowledged_by) == (supervisor, supervisor)
    assert client.get(reverse("admin:health_alarm_change", args=[alarm.pk])).status_code == 200


def test_an_operator_sees_alarms_and_snapshots_without_actions(client, operator):
    now = timezone.now()
    Alarm.objects.create(kind=AlarmKind.COMPLAINTS, raised_at=now, last_seen_at=now)
    HealthSnapshot.objects.create(day=now.date(), computed_at=now)
    client.force_login(operator)

    response = client.get(reverse("admin:health_alarm_changelist"))

    assert response.status_code == 200
    assert response.context["action_form"] is None  # acknowledging and resolving are for supervisors
    assert client.get(reverse("admin:health_healthsnapshot_changelist")).status_code == 200
