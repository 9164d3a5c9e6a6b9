from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "LMX inference"

    def ready(self) -> None:
        from inference import signals

        signals.server_started.connect(_start_expiry, dispatch_uid="inference.start_expiry")


def _start_expiry(*, loop, **_) -> None:
    """Idle models past their TTL are unloaded by a task in the server's loop."""
    from inference import services

    services.expiry_task = loop.create_task(services.run_expiry())
