"""The staff page of the health dashboard and the summary on the admin index."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.health.models import Alarm, AlarmKind, DashboardTask, HealthSnapshot
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = reverse("health:dashboard")


def _year_of_snapshots():
    today = timezone.localdate()
    HealthSnapshot.objects.bulk_create(
        [
            HealthSnapshot(
                day=today - timedelta(days=i),
                members=1000,
                active_members=120 + i % 50,
                activity_rate=Decimal(12 + i % 6),
                ltv_multiple=Decimal("2.8"),
                open_rate=Decimal("11.5"),
                streak_share=Decimal("18"),
                exit_rate=Decimal("4.2"),
                group_messages=40 + i % 30,
                complaints=i % 4,
                points_liability=100_000,
                points_liability_yuan=Decimal("2000"),
                computed_at=timezone.now(),
            )
            for i in range(1, 366)
        ]
    )


@pytest.fixture
def alarm():
    now = timezone.now()
    alarm = Alarm.objects.create(
        kind=AlarmKind.QUIET_GROUPS,
        raised_at=now,
        last_seen_at=now,
        measured={"limit": 50},
    )
    task = DashboardTask.objects.create(kind=DashboardTask.Kind.TOPIC_DAY, alarm=alarm, created_at=now)
    alarm.actions = [{"action": "task_created", "task": task.pk}]
    alarm.save(update_fields=["actions"])
    return alarm


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_the_health_permission_are_refused(client):
    client.force_login(UserFactory(username="nobody"))
    assert client.get(URL).status_code == 403


def test_an_operator_sees_charts_alarms_and_tasks_but_cannot_acknowledge(client, operator, alarm):
    _year_of_snapshots()
    client.force_login(operator)

    response = client.get(URL, {"days": 365})

    assert response.status_code == 200
    chart = response.context["chart_data"]
    assert len(chart["labels"]) == 365 and len(chart["activity_rate"]) == 365
    assert chart["targets"]["activity_rate"] == 15.0
    html = response.content.decode()
    assert 'id="chart-activity_rate"' in html and "vendor/chartjs/chart.umd.min.js" in html
    assert "Quiet groups: topic day" in html and "Suggested a topic day" in html
    assert reverse("health:task_close", args=[alarm.tasks.get().pk]) in html
    assert reverse("health:alarm_acknowledge", args=[alarm.pk]) not in html

    assert client.post(reverse("health:alarm_acknowledge", args=[alarm.pk])).status_code == 403
    assert client.post(reverse("health:alarm_resolve", args=[alarm.pk])).status_code == 403
    alarm.refresh_from_db()
    assert alarm.acknowledged_at is None


def test_the_page_reads_a_year_in_a_few_queries(client, operator, alarm, django_assert_max_num_queries):
    _year_of_snapshots()
    client.force_login(operator)
    with django_assert_max_num_queries(12):
        assert client.get(URL, {"days": 365}).status_code == 200


def test_an_unknown_range_falls_back_to_90_days(client, operator):
    _year_of_snapshots()
    client.force_login(operator)
    response = client.get(URL, {"days": "all"})
    assert response.context["days"] == 90
    assert len(response.context["chart_data"]["labels"]) == 90


def test_a_supervisor_acknowledges_then_resolves(client, supervisor, alarm):
    client.force_login(supervisor)

    response = client.post(reverse("health:alarm_acknowledge", args=[alarm.pk]), {"note": "on it"})

    assert response.status_code == 302
    alarm.refresh_from_db()
    assert (alarm.acknowledged_by, alarm.note) == (supervisor, "on it")
    assert client.post(reverse("health:alarm_resolve", args=[alarm.pk])).status_code == 302
    alarm.refresh_from_db()
    assert alarm.resolved_by == supervisor
    assert alarm not in client.get(URL).context["alarms"]


def test_bad_input_is_refused_with_400_and_changes_nothing(client, supervisor, alarm):
    client.force_login(supervisor)
    task = alarm.tasks.get()

    assert client.post(reverse("health:alarm_acknowledge", args=[alarm.pk]), {"note": "x" * 2001}).status_code == 400
    assert client.post(reverse("health:task_close", args=[task.pk]), {"status": "open"}).status_code == 400
    assert client.post(reverse("health:alarm_acknowledge", args=[999_999])).status_code == 404
    assert client.get(reverse("health:alarm_acknowledge", args=[alarm.pk])).status_code == 405
    alarm.refresh_from_db()
    task.refresh_from_db()
    assert alarm.acknowledged_at is None and task.status == DashboardTask.Status.OPEN


def test_an_operator_marks_the_suggested_task_done(client, operator, alarm):
    client.force_login(operator)
    task = alarm.tasks.get()

    assert client.post(reverse("health:task_close", args=[task.pk]), {"status": "done"}).status_code == 302

    task.refresh_from_db()
    assert (task.status, task.closed_by) == (DashboardTask.Status.DONE, operator)
    response = client.post(reverse("health:task_close", args=[task.pk]), {"status": "done"}, follow=True)
    assert "closed already" in response.content.decode()


def test_the_admin_index_shows_the_health_summary(client, operator, alarm):
    HealthSnapshot.objects.create(
        day=date(2026, 3, 15),
        activity_rate=Decimal("9.50"),
        exit_rate=Decimal("2"),
        complaints=3,
        computed_at=timezone.now(),
    )
    client.force_login(operator)

    html = client.get(reverse("admin:index")).content.decode()

    assert 'id="health-summary"' in html
    assert "9.50%" in html and "Quiet groups: topic day" in html
    assert URL in html


def test_the_admin_index_hides_the_summary_without_the_permission(client):
    client.force_login(UserFactory(username="nobody"))
    assert 'id="health-summary"' not in client.get(reverse("admin:index")).content.decode()


def test_the_dashboard_speaks_chinese(client, operator, alarm):
    client.force_login(operator)
    client.cookies["django_language"] = "zh-hans"
    html = client.get(URL).content.decode()
    assert "社群健康" in html and "话题日" in html
