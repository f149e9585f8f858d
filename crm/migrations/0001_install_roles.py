from django.db import migrations

from crm.roles import sync_roles_in_migration


class Migration(migrations.Migration):
    """Installs the staff roles Operator, Supervisor and Auditor (see crm/roles.py)."""

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("members", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop)]
