"""Run LMX: Daphne on LMX_HOST:LMX_PORT, the engine process, and the default model loading."""

import asyncio
import logging
import sys
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from inference import conf, launch
from lmx_site import api_keys

log = logging.getLogger("lmx")


class Command(BaseCommand):
    help = "Serve LMX with Daphne and load LMX_DEFAULT_MODEL."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None, help="default: LMX_HOST")
        parser.add_argument("--port", type=int, default=None, help="default: LMX_PORT")
        parser.add_argument(
            "--model", default=None, help="model to load at start (default: LMX_DEFAULT_MODEL)"
        )
        parser.add_argument(
            "--ranks",
            type=int,
            default=1,
            help="serve each model split over this many processes on this machine (mx.distributed "
            "ring over loopback); across machines run it under mlx.launch instead",
        )

    def handle(self, *args, host=None, port=None, model=None, ranks=1, **options):
        from daphne.endpoints import build_endpoint_description_strings

        from inference import runtime, signals
        from inference.daphne_server import LMXDaphne
        from lmx_site.asgi import application

        try:
            conf.validate()
        except ImproperlyConfigured as exc:  # one line naming the setting, not a traceback
            raise CommandError(str(exc)) from exc
        if launch.rank():  # a follower rank (from mlx.launch, or rank 0's --ranks): no HTTP
            sys.exit(runtime.follow())
        if ranks < 1:
            raise CommandError("--ranks must be 1 or more")
        group = launch.LocalRanks(ranks).start() if ranks > 1 and launch.rank() is None else None
        host = host or conf.get("LMX_HOST")
        port = port or conf.get("LMX_PORT")
        model = conf.get("LMX_DEFAULT_MODEL") if model is None else model
        log.info("LMX starting on %s:%s", host, port)
        api_keys.warn_if_open(host)
        runtime.get_engine()  # the engine process says which speed-ups it runs
        if model:
            threading.Thread(
                target=self._load_default, args=(model,), name="lmx-default-load", daemon=True
            ).start()
        server = LMXDaphne(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            http_timeout=None,
            websocket_timeout=86400,
            websocket_max_message_size=conf.get("LMX_MAX_BODY_BYTES"),
            websocket_max_frame_size=conf.get("LMX_MAX_BODY_BYTES"),
            application_close_timeout=10,
            server_name="lmx",
        )
        from twisted.internet import reactor

        def started() -> None:  # inside Daphne's asyncio loop, now running
            signals.server_started.send(sender=LMXDaphne, loop=asyncio.get_running_loop())

        # Daphne runs Twisted on an asyncio loop: whatever lives in that loop (the metrics
        # ticker) starts on the loop's first turn.
        reactor.callWhenRunning(reactor.callLater, 0, started)
        try:
            server.run()
        finally:
            runtime.shutdown()  # rank 0's engine stops the group's other ranks with it
            if group is not None:
                group.stop()

    @staticmethod
    def _load_default(model: str) -> None:
        from inference import services
        from inference.errors import LMXError

        try:
            asyncio.run(services.model_load(ref=model))
        except LMXError as exc:
            log.error("Default model %s was not loaded: %s", model, exc.message)
        except Exception:
            log.exception("Default model %s was not loaded", model)
