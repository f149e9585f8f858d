from django.db import migrations

from crm.roles import sync_roles_in_migration


class Migration(migrations.Migration):
    """Gives the staff roles their permissions on journeys, recall playbooks, staff-set churn reasons,
    referrals and channels (see crm/roles.py)."""

    dependencies = [("campaigns", "0007_install_journeys_and_playbooks")]

    operations = [migrations.RunPython(sync_roles_in_migration, migrations.RunPython.noop)]
