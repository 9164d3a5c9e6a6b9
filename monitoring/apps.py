from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "LMX monitoring"

    def ready(self):
        from monitoring import receivers

        receivers.connect()
