from django.db import migrations

from crm.roles import sync_roles_in_migration


def install_settings(apps, schema_editor):
    # The field defaults are the playbook's numbers (activity ≥ 15%, LTV ≥ 3× the average order,
    # open rate ≥ 10%, 50 group messages a day for 3 days, complaints +30%, exits 8%); staff change
    # them in the admin afterwards.
    HealthSettings = apps.get_model("health", "HealthSettings")
    HealthSettings.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    """Installs the health settings row and gives the staff roles their health permissions."""

    dependencies = [
        ("health", "0001_initial"),
        ("crm", "0001_install_roles"),
    ]

    operations = [
        migrations.RunPython(install_settings, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
