from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = _("Operations desk")

    def ready(self) -> None:
        from crm.roles import sync_roles_after_migrate
        from crm.schedules import install_schedules_after_migrate

        # After every migrate: make sure default beat schedules and staff roles exist.
        # Both only add what is missing, so staff edits in the admin are kept.
        post_migrate.connect(install_schedules_after_migrate, sender=self)
        post_migrate.connect(sync_roles_after_migrate, sender=self)
