from django.db import migrations

from crm.roles import sync_roles_in_migration

SEVERITIES = ["low", "medium", "high", "critical"]


def install_defaults(apps, schema_editor):
    # The 3T SOP's numbers for every severity (Tell 15 min, Time 1 h, Trust 24 h; warn the owner at
    # 80% of each); staff tighten or loosen them per severity in the admin afterwards.
    SlaPolicy = apps.get_model("desk", "SlaPolicy")
    for severity in SEVERITIES:
        SlaPolicy.objects.get_or_create(severity=severity)
    apps.get_model("desk", "DeskSettings").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    """Installs the 3T deadline policies and the desk settings, and gives the roles their desk permissions."""

    dependencies = [
        ("desk", "0001_initial"),
        ("crm", "0001_install_roles"),
    ]

    operations = [
        migrations.RunPython(install_defaults, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
