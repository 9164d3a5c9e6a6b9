from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "LMX inference"

    def ready(self) -> None:
        from inference import signals

        signals.server_started.connect(_start_expiry, dispatch_uid="inference.start_expiry")
        signals.server_started.connect(_watch_store, dispatch_uid="inference.watch_store")


def _start_expiry(*, loop, **_) -> None:
    """Idle models past their TTL are unloaded by a task in the server's loop."""
    from inference import services

    services.expiry_task = loop.create_task(services.run_expiry())


def _watch_store(**_) -> None:
    """New files in the model store are scanned before a request asks for them."""
    from inference.store_index import index

    index.watch()
