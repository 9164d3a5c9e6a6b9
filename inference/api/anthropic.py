"""Anthropic's Messages API: POST /v1/messages (what Claude Code and the `anthropic` SDK send)
and POST /v1/messages/count_tokens, over the same engine and request path as chat completions.
Errors come in Anthropic's shape and are recorded with LMX's codes."""

from __future__ import annotations

import asyncio
import json

from pydantic import BaseModel

from inference import serving, shutdown
from inference.api.protocol import anthropic as protocol
from inference.errors import (
    INSUFFICIENT_MEMORY,
    LMXError,
    scrub,
)
from inference.wire import Done, Failed, FinishReason, Reasoning, Text, ToolCalls
from lmx_site.consumers import SSE_HEADERS, StreamingConsumer, record_error, sse_frame

ERROR_TYPES = {
    "invalid-request": "invalid_request_error",
    "unauthorized": "authentication_error",
    "model-not-found": "not_found_error",
    "server-busy": "overloaded_error",
}


def error_payload(err: LMXError) -> dict:
    kind = ERROR_TYPES.get(err.code, "overloaded_error" if err.kind is INSUFFICIENT_MEMORY else "api_error")
    detail = protocol.AnthropicErrorDetail(type=kind, message=f"{scrub(err.message)} (LMX code: {err.code})")
    return protocol.AnthropicError(error=detail).model_dump()


def stop_reason(done: Done) -> str:
    if done.finish_reason is FinishReason.LENGTH:
        return "max_tokens"
    if done.finish_reason is FinishReason.TOOL_CALLS:
        return "tool_use"
    return "stop_sequence" if done.stop_sequence else "end_turn"


def usage(stats) -> protocol.MessageUsage:
    """Anthropic counts the prompt's cached part apart from the rest."""
    return protocol.MessageUsage(
        input_tokens=stats.prompt_tokens - stats.cached_tokens,
        output_tokens=stats.completion_tokens,
        cache_read_input_tokens=stats.cached_tokens,
    )


def tool_use(call) -> protocol.ToolUseContent:
    return protocol.ToolUseContent(id=call.id, name=call.name, input=json.loads(call.arguments or "{}"))


class AnthropicConsumer(StreamingConsumer):
    methods = ("POST",)

    def error_payload(self, err: LMXError) -> dict:
        return error_payload(err)


class CountTokensConsumer(AnthropicConsumer):
    async def post(self, body: bytes) -> None:
        data = self.parse_json(body)
        self.note_model(data)
        req = protocol.count_tokens_request(data)
        loaded = await serving.ensure_model(req.model, keep_alive=req.keep_alive)
        self.model_name = loaded.spec.id
        tokens = await serving.chat_tokens(req, loaded)
        await self.send_json(protocol.InputTokens(input_tokens=len(tokens)).model_dump())


class MessagesConsumer(AnthropicConsumer):
    async def post(self, body: bytes) -> None:
        shutdown.track(asyncio.current_task())
        data = self.parse_json(body)
        self.note_model(data)
        req = protocol.messages_request(data)
        streams, loaded = await serving.start_generations(req)
        self.model_name = loaded.spec.id
        try:
            await (self._stream if req.stream else self._complete)(streams[0], loaded.spec.id)
        finally:
            streams[0].cancel()  # no-op when finished; stops generation when the client went away

    async def _complete(self, generation, model: str) -> None:
        text, thoughts, calls = [], [], []
        async for event in generation.events():
            match event:
                case Text(piece):
                    text.append(piece)
                case Reasoning(piece):
                    thoughts.append(piece)
                case ToolCalls(made):
                    calls += made
                case Failed(error):
                    raise error
                case Done() as done:
                    serving.log_completion(
                        model, done.stats, endpoint=self.scope["path"], finish_reason=done.finish_reason
                    )
                    content = [protocol.ThinkingContent(thinking="".join(thoughts))] if thoughts else []
                    if text or not calls:
                        content.append(protocol.TextContent(text="".join(text)))
                    content += [tool_use(call) for call in calls]
                    message = protocol.MessageResponse(
                        id=serving.new_id("msg"),
                        content=content,
                        model=model,
                        stop_reason=stop_reason(done),
                        stop_sequence=done.stop_sequence,
                        usage=usage(done.stats),
                    )
                    await self.send_json(message.model_dump())

    async def _send(self, kind: str, payload: dict | BaseModel) -> None:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump()
        await self.send_body(sse_frame({"type": kind, **payload}, kind), more_body=True)

    async def _stream(self, generation, model: str) -> None:
        """Anthropic's event sequence: message_start, ping, each content block's start, deltas
        and stop, message_delta (stop reason, usage), message_stop."""
        events, started = await serving.opened(generation)
        cached, prompt = started.cached_tokens, started.prompt_tokens
        await self.send_headers(status=200, headers=SSE_HEADERS)
        start = protocol.MessageResponse(
            id=serving.new_id("msg"),
            content=[],
            model=model,
            stop_reason=None,
            usage=protocol.MessageUsage(
                input_tokens=prompt - cached, output_tokens=0, cache_read_input_tokens=cached
            ),
        )
        await self._send("message_start", {"message": start.model_dump()})
        await self._send("ping", {})
        index, open_kind = -1, None

        async def close():
            nonlocal open_kind
            if open_kind is not None:
                await self._send("content_block_stop", {"index": index})
                open_kind = None

        async def open_block(kind: str, block: dict):
            nonlocal index, open_kind
            await close()
            index, open_kind = index + 1, kind
            await self._send("content_block_start", {"index": index, "content_block": block})

        async for event in events:
            match event:
                case Reasoning(piece):
                    if open_kind != "thinking":
                        await open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                    delta = {"type": "thinking_delta", "thinking": piece}
                    await self._send("content_block_delta", {"index": index, "delta": delta})
                case Text(piece):
                    if open_kind != "text":
                        await open_block("text", {"type": "text", "text": ""})
                    delta = {"type": "text_delta", "text": piece}
                    await self._send("content_block_delta", {"index": index, "delta": delta})
                case ToolCalls(made):
                    for call in made:
                        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
                        await open_block("tool_use", block)
                        delta = {"type": "input_json_delta", "partial_json": call.arguments}
                        await self._send("content_block_delta", {"index": index, "delta": delta})
                    await close()
                case Failed(error):
                    await record_error(error, endpoint=self.endpoint, model=model)
                    await self._send("error", {"error": error_payload(error)["error"]})
                    break
                case Done() as done:
                    serving.log_completion(
                        model, done.stats, endpoint=self.scope["path"], finish_reason=done.finish_reason
                    )
                    if index < 0:  # nothing was said: an empty text block, as Anthropic sends
                        await open_block("text", {"type": "text", "text": ""})
                    await close()
                    delta = {"stop_reason": stop_reason(done), "stop_sequence": done.stop_sequence}
                    await self._send(
                        "message_delta", {"delta": delta, "usage": usage(done.stats).model_dump()}
                    )
                    await self._send("message_stop", {})
        await self.send_body(b"", more_body=False)
