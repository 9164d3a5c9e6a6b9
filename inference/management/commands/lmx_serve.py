"""Run LMX: Daphne on LMX_HOST:LMX_PORT, the engine, and the default model loading."""

import asyncio
import logging
import os
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from inference import conf, cpu_blas

log = logging.getLogger("lmx")


class Command(BaseCommand):
    help = "Serve LMX with Daphne and load LMX_DEFAULT_MODEL."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None, help="default: LMX_HOST")
        parser.add_argument("--port", type=int, default=None, help="default: LMX_PORT")
        parser.add_argument(
            "--model", default=None, help="model to load at start (default: LMX_DEFAULT_MODEL)"
        )

    def handle(self, *args, host=None, port=None, model=None, **options):
        from daphne.endpoints import build_endpoint_description_strings

        from inference import runtime
        from inference.daphne_server import LMXDaphne
        from lmx_site.asgi import application

        try:
            conf.validate()
        except ImproperlyConfigured as exc:  # one line naming the setting, not a traceback
            raise CommandError(str(exc)) from exc
        cpu_blas.preload_and_reexec()
        if os.environ.get("LMX_BENCH_HOOK"):  # set by lmx_bench_probe only
            from inference.benchmarks import server_hook

            server_hook.install(os.environ["LMX_BENCH_HOOK"])
        host = host or conf.get("LMX_HOST")
        port = port or conf.get("LMX_PORT")
        model = conf.get("LMX_DEFAULT_MODEL") if model is None else model
        log.info("LMX starting on %s:%s", host, port)
        if cpu_blas.should_dequantize():
            log.info("CPU fast path: float32 weights with OpenBLAS (LMX_CPU_FAST_PATH=off to disable)")
        from inference import batch_layers

        if batch_layers.enabled():
            log.info(
                "Batch layers: quantized layers fold the batch into one matmul (LMX_BATCH_LAYERS=off to disable)"
            )
        from inference import attention, solo

        if attention.enabled():
            log.info(
                "Short attention: prompt chunks after cached tokens skip cuDNN's per-shape graphs "
                "(LMX_SHORT_ATTENTION=off to disable)"
            )

        if solo.buckets_enabled():
            log.info(
                "Prefill buckets: prompt chunks are padded to one of 16 lengths, each run once at load "
                "(LMX_PREFILL_BUCKETS=off to disable)"
            )
        runtime.get_engine()
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
            application_close_timeout=10,
            server_name="lmx",
        )
        from twisted.internet import reactor

        from monitoring import ticker

        # Daphne runs Twisted on an asyncio loop; the ticker lives in that loop.
        reactor.callWhenRunning(lambda: ticker.start(reactor._asyncioEventloop))
        try:
            server.run()
        finally:
            runtime.shutdown()

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
