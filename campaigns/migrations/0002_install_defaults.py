from django.db import migrations

from crm.roles import sync_roles_in_migration


def install_defaults(apps, schema_editor):
    # The field defaults are the product's defaults (1 promotional message a day and 3 a week per
    # member, quiet hours 22:00–08:00); staff change them in the admin afterwards.
    OutboxSettings = apps.get_model("campaigns", "OutboxSettings")
    OutboxSettings.objects.get_or_create(pk=1)
    ChannelConfig = apps.get_model("campaigns", "ChannelConfig")
    # E-mail goes through Django's configured backend and in-app messages are stored, so both work at
    # once; SMS and WeCom wait (their messages stay queued) until staff enter the gateway's URL and secret.
    for channel, enabled in (("email", True), ("in_app", True), ("sms", False), ("wecom", False)):
        ChannelConfig.objects.get_or_create(channel=channel, defaults={"enabled": enabled})


class Migration(migrations.Migration):
    """Installs the outbox settings row and the channels, and gives the staff roles their campaign
    permissions (see crm/roles.py)."""

    dependencies = [
        ("campaigns", "0001_initial"),
        ("crm", "0001_install_roles"),
    ]

    operations = [
        migrations.RunPython(install_defaults, migrations.RunPython.noop),
        migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop),
    ]
