"""WS /v1/chat/stream: send a chat-completions body, receive {"token"} messages, then
{"done": true, "stats": {...}}. Several requests may follow on one socket, one at a time."""

from __future__ import annotations

import asyncio
import json
import logging

from channels.generic.websocket import AsyncWebsocketConsumer

from inference import serving, shutdown
from inference.api.protocol import chat
from inference.errors import INTERNAL, UNAUTHORIZED, InvalidRequest, LMXError, error_body, to_lmx_error
from inference.wire import Done, Failed, Reasoning, Text, ToolCalls
from lmx_site import api_keys, json_body
from lmx_site.consumers import DirectDispatch, record_error

log = logging.getLogger("lmx.ws")


class ChatStreamConsumer(DirectDispatch, AsyncWebsocketConsumer):
    async def connect(self):
        self._task: asyncio.Task | None = None
        await self.accept()
        if not api_keys.key_ok(self.scope):  # accepted first so the client reads why
            await self._fail(LMXError(api_keys.REFUSAL, kind=UNAUTHORIZED))
            await self.close(code=1008)

    async def disconnect(self, code):
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def receive(self, text_data=None, bytes_data=None):
        if self._task is not None and not self._task.done():
            await self._fail(
                InvalidRequest("A request is already streaming on this socket; wait for its 'done' message.")
            )
            return
        self._task = asyncio.get_running_loop().create_task(self._serve(text_data, bytes_data))
        shutdown.track(self._task)

    async def _serve(self, text_data, bytes_data) -> None:
        model = ""
        try:
            data = json_body.loads(text_data if text_data is not None else bytes_data or b"", what="message")
            if not isinstance(data, dict):
                raise InvalidRequest("The message must be a JSON object (a chat-completions body).")
            req = chat.chat_request(data)
            if req.params.logprobs is not None:
                raise InvalidRequest(
                    "Field 'logprobs' is not sent over the WebSocket; use POST /v1/chat/completions for it."
                )
            model = req.model
            generation, loaded = await serving.start_generation(req)
            model = loaded.spec.id
            try:
                async for event in generation.events():
                    match event:
                        case Text(text):
                            await self.send(text_data=json.dumps({"token": text}))
                        case Reasoning(text):
                            await self.send(text_data=json.dumps({"reasoning": text}))
                        case ToolCalls(made):
                            calls = [
                                {
                                    "id": c.id,
                                    "type": "function",
                                    "function": {"name": c.name, "arguments": c.arguments},
                                }
                                for c in made
                            ]
                            await self.send(text_data=json.dumps({"tool_calls": calls}))
                        case Failed(error):
                            raise error
                        case Done(finish, stats):
                            serving.log_completion(
                                model, stats, endpoint="/v1/chat/stream", finish_reason=finish
                            )
                            await self.send(
                                text_data=json.dumps(
                                    {
                                        "done": True,
                                        "finish_reason": finish,
                                        "model": model,
                                        "stats": stats.as_dict(),
                                        "usage": serving.usage(stats),
                                    }
                                )
                            )
            finally:
                generation.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = to_lmx_error(exc)
            if err.kind is INTERNAL:
                log.exception("WebSocket request failed")
            await self._fail(err, model=model)

    async def _fail(self, err: LMXError, model: str = "") -> None:
        await record_error(err, endpoint="WS /v1/chat/stream", model=model)
        await self.send(text_data=json.dumps(error_body(err) | {"done": True}))
