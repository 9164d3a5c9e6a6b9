"""OpenAI's Responses API: POST /v1/responses (what Codex and the Agents SDK send), and
GET / DELETE /v1/responses/{id} for the responses it stored. Same engine, request path and
error contract as chat completions; a stored response's conversation is what
`previous_response_id` continues."""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from pydantic import BaseModel

from inference import serving, shutdown, stored_responses
from inference.api.protocol import responses as protocol
from inference.errors import PATH_NOT_FOUND, LMXError, error_body
from inference.wire import Done, Failed, FinishReason, Reasoning, Text, ToolCalls
from lmx_site.consumers import SSE_HEADERS, JsonConsumer, StreamingConsumer, record_error, sse_frame


class NotStored(LMXError):
    kind = PATH_NOT_FOUND


def _usage(stats) -> protocol.ResponseUsage:
    return protocol.ResponseUsage(
        input_tokens=stats.prompt_tokens,
        input_tokens_details=protocol.InputTokensDetails(cached_tokens=stats.cached_tokens),
        output_tokens=stats.completion_tokens,
        total_tokens=stats.prompt_tokens + stats.completion_tokens,
    )


class Answer:
    """The output items of one response as its events arrive, in order."""

    def __init__(self):
        self.items: list[BaseModel] = []

    def current(self, kind: type[BaseModel]) -> BaseModel | None:
        return self.items[-1] if self.items and isinstance(self.items[-1], kind) else None

    def assistant_turn(self) -> dict:
        """The output as the chat message a next turn's template reads."""
        text = "".join(
            part.text
            for item in self.items
            if isinstance(item, protocol.OutputMessage)
            for part in item.content
        )
        calls = [
            {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            for item in self.items
            if isinstance(item, protocol.OutputFunctionCall)
        ]
        return {"role": "assistant", "content": text, **({"tool_calls": calls} if calls else {})}


class ResponsesConsumer(StreamingConsumer):
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        shutdown.track(asyncio.current_task())
        data = self.parse_json(body)
        self.note_model(data)
        req = protocol.responses_request(data)
        history = []
        if req.previous_response_id:
            stored = await database_sync_to_async(stored_responses.stored_response_get)(
                response_id=req.previous_response_id
            )
            if stored is None:
                raise NotStored(
                    f"previous_response_id '{req.previous_response_id}' is not stored here: it was made "
                    "with store false, deleted, or purged (LMX_RESPONSE_RETENTION_DAYS)."
                )
            history = stored.conversation
        chat = req.to_chat_request(history)
        streams, loaded = await serving.start_generations(chat)
        self.model_name = loaded.spec.id
        self.req, self.chat, self.history = req, chat, history
        self.shell = protocol.ResponseObject(
            id=serving.new_id("resp"),
            created_at=serving.now(),
            status="in_progress",
            instructions=req.instructions,
            max_output_tokens=req.max_output_tokens,
            model=loaded.spec.id,
            output=[],
            parallel_tool_calls=req.parallel_tool_calls is not False,
            previous_response_id=req.previous_response_id,
            reasoning=req.reasoning.model_dump() if req.reasoning else None,
            store=req.store,
            temperature=req.temperature,
            text=req.text.model_dump(by_alias=True, exclude_none=True)
            if req.text
            else {"format": {"type": "text"}},
            tool_choice=req.tool_choice.model_dump()
            if isinstance(req.tool_choice, BaseModel)
            else (req.tool_choice or "auto"),
            tools=[t.model_dump(exclude_none=True) for t in req.tools or []],
            top_p=req.top_p,
            metadata=req.metadata or {},
        )
        try:
            await (self._stream if req.stream else self._complete)(streams[0])
        finally:
            streams[0].cancel()  # no-op when finished; stops generation when the client went away

    # --- the answer, item by item ------------------------------------------------------------

    async def _on(self, answer: Answer, event, emit) -> Done | None:
        """Fold one engine event into the answer; `emit(kind, payload)` streams what changed."""
        match event:
            case Reasoning(piece):
                item = answer.current(protocol.OutputReasoning)
                if item is None:
                    await self._close_open(answer, emit)
                    item = protocol.OutputReasoning(id=serving.new_id("rs"), status="in_progress")
                    answer.items.append(item)
                    await emit("response.output_item.added", item=item)
                    item.content.append(protocol.ReasoningText(text=""))
                item.content[0].text += piece
                await emit("response.reasoning_text.delta", item_id=item.id, content_index=0, delta=piece)
            case Text(piece):
                item = answer.current(protocol.OutputMessage)
                if item is None:
                    await self._close_open(answer, emit)
                    item = protocol.OutputMessage(id=serving.new_id("msg"), status="in_progress", content=[])
                    answer.items.append(item)
                    await emit("response.output_item.added", item=item)
                    item.content.append(protocol.OutputText(text=""))
                    await emit(
                        "response.content_part.added", item_id=item.id, content_index=0, part=item.content[0]
                    )
                item.content[0].text += piece
                await emit(
                    "response.output_text.delta", item_id=item.id, content_index=0, delta=piece, logprobs=[]
                )
            case ToolCalls(made):
                for call in made:
                    await self._close_open(answer, emit)
                    item = protocol.OutputFunctionCall(
                        id=serving.new_id("fc"),
                        call_id=call.id,
                        name=call.name,
                        arguments="",
                        status="in_progress",
                    )
                    answer.items.append(item)
                    await emit("response.output_item.added", item=item)
                    item.arguments = call.arguments
                    await emit(
                        "response.function_call_arguments.delta", item_id=item.id, delta=call.arguments
                    )
            case Failed(error):
                raise error
            case Done() as done:
                await self._close_open(answer, emit)
                return done
        return None

    async def _close_open(self, answer: Answer, emit) -> None:
        for index, item in enumerate(answer.items):
            if item.status == "in_progress":
                await self._finish_item(item, index, emit)

    async def _finish_item(self, item, index: int, emit) -> None:
        """The `.done` events of one item, and its status."""
        item.status = "completed"
        if isinstance(item, protocol.OutputMessage):
            part = item.content[0]
            await emit(
                "response.output_text.done", item_id=item.id, content_index=0, text=part.text, logprobs=[]
            )
            await emit("response.content_part.done", item_id=item.id, content_index=0, part=part)
        elif isinstance(item, protocol.OutputReasoning):
            text = item.content[0].text
            await emit("response.reasoning_text.done", item_id=item.id, content_index=0, text=text)
        else:
            await emit(
                "response.function_call_arguments.done",
                item_id=item.id,
                name=item.name,
                arguments=item.arguments,
            )
        await emit("response.output_item.done", item=item)

    async def _finished(self, answer: Answer, done: Done) -> protocol.ResponseObject:
        serving.log_completion(
            self.shell.model, done.stats, endpoint=self.scope["path"], finish_reason=done.finish_reason
        )
        response = self.shell.model_copy(
            update={
                "status": "incomplete" if done.finish_reason is FinishReason.LENGTH else "completed",
                "incomplete_details": protocol.IncompleteDetails(reason="max_output_tokens")
                if done.finish_reason is FinishReason.LENGTH
                else None,
                "output": answer.items,
                "usage": _usage(done.stats),
            }
        )
        if self.req.store:
            await database_sync_to_async(stored_responses.stored_response_create)(
                response_id=response.id,
                model=response.model,
                previous_response_id=self.req.previous_response_id or "",
                body=response.model_dump(mode="json"),
                conversation=[*self.history, *self.req.conversation(), answer.assistant_turn()],
            )
        return response

    async def _complete(self, generation) -> None:
        answer = Answer()

        async def quiet(kind, **payload):
            return None

        async for event in generation.events():
            done = await self._on(answer, event, quiet)
            if done is not None:
                response = await self._finished(answer, done)
                await self.send_json(response.model_dump(mode="json"))

    async def _stream(self, generation) -> None:
        events, _ = await serving.opened(generation)
        await self.send_headers(status=200, headers=SSE_HEADERS)
        answer, sequence = Answer(), 0

        async def emit(kind: str, **payload):
            nonlocal sequence
            body = {"type": kind, "sequence_number": sequence}
            if "item" in payload:
                payload["output_index"] = answer.items.index(payload["item"])
            elif "item_id" in payload:
                payload["output_index"] = next(
                    i for i, it in enumerate(answer.items) if it.id == payload["item_id"]
                )
            for key, value in payload.items():
                body[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            sequence += 1
            await self.send_body(sse_frame(body, kind), more_body=True)

        await emit("response.created", response=self.shell)
        await emit("response.in_progress", response=self.shell)
        try:
            async for event in events:
                done = await self._on(answer, event, emit)
                if done is not None:
                    response = await self._finished(answer, done)
                    kind = "response.incomplete" if response.status == "incomplete" else "response.completed"
                    await emit(kind, response=response)
        except LMXError as error:
            await record_error(error, endpoint=self.endpoint, model=self.shell.model)
            detail = error_body(error)["error"]
            await emit("error", code=detail["code"], message=detail["message"], param=None)
        await self.send_body(b"", more_body=False)


class StoredResponseConsumer(JsonConsumer):
    """GET /v1/responses/{id} and DELETE /v1/responses/{id}."""

    methods = ("GET", "DELETE")

    def _id(self) -> str:
        return self.scope["url_route"]["kwargs"]["response_id"]

    def _missing(self) -> NotStored:
        return NotStored(
            f"No stored response '{self._id()}': it was made with store false, deleted, or purged."
        )

    async def get(self, body: bytes) -> None:
        stored = await database_sync_to_async(stored_responses.stored_response_get)(response_id=self._id())
        if stored is None:
            raise self._missing()
        await self.send_json(stored.body)

    async def delete(self, body: bytes) -> None:
        if not await database_sync_to_async(stored_responses.stored_response_delete)(response_id=self._id()):
            raise self._missing()
        await self.send_json(protocol.Deleted(id=self._id()).model_dump())
