from django.db import migrations

from crm.roles import sync_roles_in_migration


def install_settings(apps, schema_editor):
    # The field defaults are the product's defaults (50 points = 1 yuan, no minimum, end of the
    # 12th month after earning); staff change them in the admin afterwards.
    LoyaltySettings = apps.get_model("loyalty", "LoyaltySettings")
    LoyaltySettings.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    """Installs the loyalty settings row and gives the staff roles their loyalty permissions."""

    dependencies = [
        ("loyalty", "0001_initial"),
        ("crm", "0001_install_roles"),
    ]

    operations = [
        migrations.RunPython(install_settings, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
