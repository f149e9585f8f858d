from django.db import migrations

from crm.roles import sync_roles_in_migration
from loyalty.defaults import install_default_badges


def install_badges(apps, schema_editor):
    install_default_badges(apps)


class Migration(migrations.Migration):
    """Installs the titles 首席体验官, 活跃之星, 社群达人 and the check-in streak badges; roles' badge permissions."""

    dependencies = [("loyalty", "0008_badges")]

    operations = [
        migrations.RunPython(install_badges, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
