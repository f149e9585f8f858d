from django.db import migrations

from crm.roles import sync_roles_in_migration
from loyalty.defaults import install_default_tiers


def install_tiers(apps, schema_editor):
    install_default_tiers(apps)


class Migration(migrations.Migration):
    """Installs Bronze, Silver, Gold and Diamond (青铜/白银/黄金/钻石) and the roles' tier permissions."""

    dependencies = [("loyalty", "0004_tiers")]

    operations = [
        migrations.RunPython(install_tiers, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
