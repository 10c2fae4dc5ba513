from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EnergyConfig(AppConfig):
    name = "energy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from energy.db.role_settings import on_post_migrate

        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="energy.db.role_settings")
