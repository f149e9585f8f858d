from celery import current_app
from django_celery_beat.models import PeriodicTask

from crm.schedules import SCHEDULES, install_schedules


def test_every_default_schedule_names_a_registered_task():
    current_app.loader.import_default_modules()
    registered = set(current_app.tasks)
    missing = [s.task for s in SCHEDULES if s.task not in registered]
    assert missing == []


def test_schedules_are_installed_once_and_staff_edits_survive(db):
    # post_migrate installed them into the test database already.
    assert set(PeriodicTask.objects.values_list("name", flat=True)) >= {s.name for s in SCHEDULES}
    edited = PeriodicTask.objects.get(name=SCHEDULES[0].name)
    edited.enabled = False
    edited.save(update_fields=["enabled"])

    assert install_schedules() == 0

    edited.refresh_from_db()
    assert edited.enabled is False
