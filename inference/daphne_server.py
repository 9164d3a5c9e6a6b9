"""Daphne's server as lmx_serve runs it."""

from __future__ import annotations

import asyncio
import logging

from daphne.server import Server
from twisted.internet import defer

from inference import shutdown

log = logging.getLogger("lmx")


class LMXDaphne(Server):
    """Daphne, whose stop first ends LMX's requests in flight with an error their clients read
    (inference.shutdown), then cancels what is left as Daphne does."""

    def kill_all_applications(self):
        drained = defer.Deferred.fromFuture(asyncio.ensure_future(shutdown.drain()))
        drained.addErrback(lambda failure: log.error("Ending requests in flight failed: %s", failure.value))
        drained.addCallback(lambda _: super(LMXDaphne, self).kill_all_applications())
        return drained
