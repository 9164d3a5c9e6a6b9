"""The HTTP consumers' plumbing (lmx_site.consumers.JsonConsumer), driven by Channels' communicator."""

import asyncio
import json
import threading

from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator

from lmx_site.consumers import JsonConsumer


class _Echo(JsonConsumer):
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        await self.send_json({"echo": self.parse_json(body)})


def test_a_request_is_answered_while_the_process_runs_a_long_orm_call():
    """Every thread-sensitive sync call (the ORM, Django's own views) runs on one thread; a slow
    one there (an operator's error-history page, say) must not hold up API requests. Channels'
    own dispatch waits for that thread before each message; LMX's consumers do not."""

    async def scenario():
        release = threading.Event()
        busy = asyncio.ensure_future(sync_to_async(release.wait)())  # holds the sync thread
        await asyncio.sleep(0.1)
        try:
            communicator = HttpCommunicator(_Echo.as_asgi(), "POST", "/echo", body=b'{"n": 1}')
            response = await communicator.get_response(timeout=10)
            answered_while_busy = not busy.done()
        finally:
            release.set()
            await busy
        return response, answered_while_busy

    response, answered_while_busy = asyncio.run(scenario())
    assert response["status"] == 200 and json.loads(response["body"]) == {"echo": {"n": 1}}
    assert answered_while_busy
