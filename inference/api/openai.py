"""OpenAI-compatible endpoints: /v1/models, /v1/chat/completions, /v1/completions."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from inference import aliases, serving, shutdown, store_index
from inference.api.protocol import chat, completions
from inference.api.protocol.common import Usage
from inference.errors import error_body
from inference.requests import CompletionRequest
from inference.runtime import get_engine
from inference.wire import Done, Failed, Logprobs, Reasoning, Text, ToolCalls
from lmx_site.consumers import SSE_HEADERS, JsonConsumer, StreamingConsumer, record_error, sse_frame


class ModelsListConsumer(JsonConsumer):
    async def get(self, body: bytes) -> None:
        specs = await asyncio.to_thread(store_index.index.models)
        resident = {m.spec.path for m in get_engine().models}
        data = [
            {
                "id": s.id,
                "object": "model",
                "created": 0,
                "owned_by": "lmx",
                "loaded": s.path in resident,
                "format": s.format,
                "kind": s.kind,
            }
            for s in specs
        ]
        known = {entry["id"].lower(): entry for entry in data}
        for alias, target in sorted(aliases.all_aliases().items()):
            entry = known.get(target.lower()) or known.get(f"{target.lower()}.gguf")
            if entry is not None and alias not in known:  # an alias of a model on disk
                data.append({**entry, "id": alias, "alias_of": entry["id"]})
        await self.send_json({"object": "list", "data": data})


class GenerationConsumer(StreamingConsumer):
    """Shared streaming / non-streaming plumbing; subclasses shape the payloads."""

    methods = ("POST",)
    id_prefix = ""

    def parse(self, data: dict):
        raise NotImplementedError

    def chunk(
        self, rid: str, model: str, created: int, text: str | None, finish: str | None, first: bool
    ) -> dict | None:
        raise NotImplementedError

    def full_choice(self, text: str, calls: list, finish: str, index: int) -> BaseModel:
        raise NotImplementedError

    def tool_chunks(self, rid: str, model: str, created: int, calls, first_index: int) -> list[dict]:
        return []  # only chat has tools

    def full(self, rid: str, model: str, created: int, choices: list, usage: dict, stats) -> BaseModel:
        """The non-streamed answer."""
        raise NotImplementedError

    def usage_chunk(self, rid: str, model: str, created: int, usage: dict) -> BaseModel:
        """The last chunk of a stream, with `include_usage`: no choices, the usage."""
        raise NotImplementedError

    def reasoning_chunk(self, rid: str, model: str, created: int, text: str) -> BaseModel:
        raise NotImplementedError

    async def post(self, body: bytes) -> None:
        shutdown.track(asyncio.current_task())
        req = self.parse(self.parse_json(body))
        self.model_name = req.model
        streams, loaded = await serving.start_generations(req)
        self.model_name = loaded.spec.id
        try:
            self.prompt_scores = (
                await serving.prompt_logprobs(req, loaded) if isinstance(req, CompletionRequest) else None
            )
            if len(streams) > 1:  # completions with several prompts: a choice each
                await (self._stream_many if req.stream else self._complete_many)(req, streams, loaded.spec.id)
            elif req.stream:
                await self._stream(req, streams[0], loaded.spec.id)
            else:
                await self._complete(req, streams[0], loaded.spec.id)
        finally:
            for stream in streams:  # no-op when finished; stops generation when the client went away
                stream.cancel()

    async def _complete(self, req, generation, model: str) -> None:
        """JSON: the whole answer in one body."""
        parts, calls, thoughts, entries = [], [], [], []
        async for event in generation.events():
            match event:
                case Text(text):
                    parts.append(text)
                case Logprobs(got):
                    entries += got
                case Reasoning(text):
                    thoughts.append(text)
                case ToolCalls(made):
                    calls += made
                case Failed(error):
                    raise error
                case Done(finish, stats):
                    serving.log_completion(model, stats, endpoint=self.scope["path"], finish_reason=finish)
                    text = "".join(parts)
                    if getattr(req, "echo", False):
                        text = req.prompt + text
                    choice = self.full_choice(text, calls, finish, 0)
                    if thoughts:  # chat only: completions never split reasoning out
                        choice.message.reasoning_content = "".join(thoughts)
                    if req.params.logprobs is not None:
                        choice.logprobs = self.with_prompt(
                            self.logprobs_body(entries, len(text) - len("".join(parts))), 0
                        )
                    full = self.full(
                        serving.new_id(self.id_prefix),
                        model,
                        serving.now(),
                        [choice],
                        serving.usage(stats),
                        stats.as_dict(),
                    )
                    await self.send_json(full.model_dump(mode="json"))

    async def _stream(self, req, generation, model: str) -> None:
        """SSE: a chunk per step's text, then the finish chunk, usage if asked, and [DONE]."""
        rid, created = serving.new_id(self.id_prefix), serving.now()
        events, _ = await serving.opened(generation)
        await self.send_headers(status=200, headers=SSE_HEADERS)
        opening = self.chunk(rid, model, created, None, None, first=True)
        if opening is not None:
            await self._send_event(opening)
        offset = 0
        if getattr(req, "echo", False):  # the prompt first, as its own chunk
            echo = self.indexed_chunk(rid, model, created, 0, req.prompt, None)
            if req.params.logprobs is not None:
                echo.choices[0].logprobs = self.with_prompt(None, 0)
            await self._send_event(echo)
            offset = len(req.prompt)
        calls_sent, pending = 0, []
        async for event in events:
            match event:
                case Text(text):
                    chunk = self.chunk(rid, model, created, text, None, first=False)
                    if pending:  # the log-probabilities of the tokens this text came from
                        chunk.choices[0].logprobs = self.logprobs_body(pending, offset)
                        pending = []
                    offset += len(text)
                    await self._send_event(chunk)
                case Logprobs(got):
                    pending += got
                case Reasoning(text):
                    await self._send_event(self.reasoning_chunk(rid, model, created, text))
                case ToolCalls(made):
                    for chunk in self.tool_chunks(rid, model, created, made, calls_sent):
                        await self._send_event(chunk)
                    calls_sent += len(made)
                case Failed(error):
                    await record_error(error, endpoint=self.endpoint, model=model)
                    await self._send_event(error_body(error) | {"id": rid})
                case Done(finish, stats):
                    serving.log_completion(model, stats, endpoint=self.scope["path"], finish_reason=finish)
                    if pending:  # tokens whose text was held back (a stop string's start)
                        chunk = self.chunk(rid, model, created, None, None, first=False)
                        chunk.choices[0].logprobs = self.logprobs_body(pending, offset)
                        await self._send_event(chunk)
                    await self._send_event(self.chunk(rid, model, created, None, finish, first=False))
                    if req.include_usage:
                        await self._send_event(self.usage_chunk(rid, model, created, serving.usage(stats)))
        await self.send_body(b"data: [DONE]\n\n", more_body=False)

    async def _complete_many(self, req, streams, model: str) -> None:
        """JSON, several prompts: the choices in the prompts' order, usage added up."""

        async def collect(stream):
            parts, entries = [], []
            async for event in stream.events():
                match event:
                    case Text(text):
                        parts.append(text)
                    case Logprobs(got):
                        entries += got
                    case Failed(error):
                        raise error
                    case Done(finish, stats):
                        serving.log_completion(
                            model, stats, endpoint=self.scope["path"], finish_reason=finish
                        )
                        return "".join(parts), finish, stats, entries

        results = await asyncio.gather(*(collect(stream) for stream in streams))
        wanted = req.params.logprobs is not None
        choices = []
        for i, (text, finish, _, entries) in enumerate(results):
            choice = self.full_choice(req.prompts[i] + text if req.echo else text, [], finish, i)
            if wanted:
                choice.logprobs = self.with_prompt(
                    self.logprobs_body(entries, len(req.prompts[i]) if req.echo else 0), i
                )
            choices.append(choice)
        usage = serving.usage_sum([result[2] for result in results])
        stats = [result[2].as_dict() for result in results]
        rid, created = serving.new_id(self.id_prefix), serving.now()
        await self.send_json(self.full(rid, model, created, choices, usage, stats).model_dump(mode="json"))

    async def _stream_many(self, req, streams, model: str) -> None:
        """SSE, several prompts: each chunk names its choice's index, as OpenAI's do."""
        rid, created = serving.new_id(self.id_prefix), serving.now()
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(index, stream):
            async for event in stream.events():
                await merged.put((index, event))

        pumps = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        try:
            await self.send_headers(status=200, headers=SSE_HEADERS)
            ended, finished = 0, []
            pending = {i: [] for i in range(len(streams))}
            offsets = dict.fromkeys(pending, 0)
            for i, prompt in enumerate(req.prompts if req.echo else ()):  # each prompt first
                echo = self.indexed_chunk(rid, model, created, i, prompt, None)
                if req.params.logprobs is not None:
                    echo.choices[0].logprobs = self.with_prompt(None, i)
                await self._send_event(echo)
                offsets[i] = len(prompt)
            while ended < len(streams):
                index, event = await merged.get()
                match event:
                    case Logprobs(got):
                        pending[index] += got
                    case Text(text):
                        chunk = self.indexed_chunk(rid, model, created, index, text, None)
                        if pending[index]:
                            chunk.choices[0].logprobs = self.logprobs_body(pending[index], offsets[index])
                            pending[index] = []
                        offsets[index] += len(text)
                        await self._send_event(chunk)
                    case Failed(error):
                        await record_error(error, endpoint=self.endpoint, model=model)
                        await self._send_event(error_body(error) | {"id": rid})
                        break
                    case Done(finish, stats):
                        ended += 1
                        finished.append(stats)
                        serving.log_completion(
                            model, stats, endpoint=self.scope["path"], finish_reason=finish
                        )
                        chunk = self.indexed_chunk(rid, model, created, index, None, finish)
                        if pending[index]:
                            chunk.choices[0].logprobs = self.logprobs_body(pending[index], offsets[index])
                        await self._send_event(chunk)
            else:
                if req.include_usage:
                    usage = serving.usage_sum(finished)
                    await self._send_event(self.usage_chunk(rid, model, created, usage))
            await self.send_body(b"data: [DONE]\n\n", more_body=False)
        finally:
            for task in pumps:
                task.cancel()

    def indexed_chunk(self, rid, model, created, index, text, finish) -> dict:
        raise NotImplementedError

    def logprobs_body(self, entries, offset: int) -> dict:
        """A choice's `logprobs` in this API's shape."""
        raise NotImplementedError

    prompt_scores = None  # the prompts' own log-probabilities, with echo (completions)

    def with_prompt(self, body: dict | None, index: int) -> dict | None:
        """`body` (the generated tokens' logprobs, or None for the prompt alone) after the prompt's
        own, where echo asked for them."""
        return body

    async def _send_event(self, payload: BaseModel | dict) -> None:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        await self.send_body(sse_frame(payload), more_body=True)


class ChatCompletionsConsumer(GenerationConsumer):
    id_prefix = "chatcmpl"

    def parse(self, data: dict):
        return chat.chat_request(data)

    def _chunk(self, rid, model, created, choices, usage=None) -> chat.ChatCompletionChunk:
        return chat.ChatCompletionChunk(id=rid, created=created, model=model, choices=choices, usage=usage)

    def chunk(self, rid, model, created, text, finish, first):
        delta = chat.Delta(role="assistant", content="") if first else chat.Delta(content=text or None)
        return self._chunk(rid, model, created, [chat.ChunkChoice(delta=delta, finish_reason=finish)])

    def reasoning_chunk(self, rid, model, created, text):
        return self._chunk(rid, model, created, [chat.ChunkChoice(delta=chat.Delta(reasoning_content=text))])

    def usage_chunk(self, rid, model, created, usage):
        return self._chunk(rid, model, created, [], Usage(**usage))

    def full_choice(self, text, calls, finish, index):
        message = chat.AssistantMessage(
            content=text if text or not calls else None,
            tool_calls=[
                chat.ToolCall(id=c.id, function=chat.FunctionCall(name=c.name, arguments=c.arguments))
                for c in calls
            ]
            or None,
        )
        return chat.Choice(index=index, message=message, finish_reason=finish)

    def full(self, rid, model, created, choices, usage, stats):
        return chat.ChatCompletion(
            id=rid, created=created, model=model, choices=choices, usage=Usage(**usage), stats=stats
        )

    def logprobs_body(self, entries, offset):
        def one(token, logprob, raw) -> dict:
            return {"token": token, "logprob": logprob, "bytes": list(raw)}

        content = [
            chat.TokenLogprob(**one(e.token, e.logprob, e.bytes), top_logprobs=[one(*alt) for alt in e.top])
            for e in entries
        ]
        return chat.ChoiceLogprobs(content=content)

    def tool_chunks(self, rid, model, created, calls, first_index):
        """OpenAI's stream of a call: its id and name with empty arguments, then the arguments."""
        chunks = []
        for index, call in enumerate(calls, start=first_index):
            opening = chat.ToolCallDelta(
                index=index, id=call.id, type="function", function={"name": call.name, "arguments": ""}
            )
            arguments = chat.ToolCallDelta(index=index, function={"arguments": call.arguments})
            for part in (opening, arguments):
                choice = chat.ChunkChoice(delta=chat.Delta(tool_calls=[part]))
                chunks.append(self._chunk(rid, model, created, [choice]))
        return chunks


class CompletionsConsumer(GenerationConsumer):
    id_prefix = "cmpl"

    def parse(self, data: dict):
        return completions.completion_request(data)

    def _chunk(self, rid, model, created, choices, usage=None, stats=None) -> completions.Completion:
        return completions.Completion(
            id=rid, created=created, model=model, choices=choices, usage=usage, stats=stats
        )

    def chunk(self, rid, model, created, text, finish, first):
        if first:
            return None  # completions streams have no role chunk
        return self.indexed_chunk(rid, model, created, 0, text, finish)

    def indexed_chunk(self, rid, model, created, index, text, finish):
        choice = completions.CompletionChoice(index=index, text=text or "", finish_reason=finish)
        return self._chunk(rid, model, created, [choice])

    def usage_chunk(self, rid, model, created, usage):
        return self._chunk(rid, model, created, [], Usage(**usage))

    def full_choice(self, text, calls, finish, index):
        return completions.CompletionChoice(index=index, text=text, finish_reason=finish)

    def full(self, rid, model, created, choices, usage, stats):
        return self._chunk(rid, model, created, choices, Usage(**usage), stats)

    def with_prompt(self, body, index):
        if self.prompt_scores is None:
            return body
        scores, offsets, offset = self.prompt_scores[index], [], 0
        for text, _, _ in scores:
            offsets.append(offset)
            offset += len(text)
        prompt = completions.CompletionLogprobs(
            tokens=[text for text, _, _ in scores],
            token_logprobs=[value for _, value, _ in scores],
            top_logprobs=[None if value is None else dict(alts) for _, value, alts in scores],
            text_offset=offsets,
        )
        if body is None:
            return prompt
        return completions.CompletionLogprobs(
            **{
                key: getattr(prompt, key) + getattr(body, key)
                for key in completions.CompletionLogprobs.model_fields
            }
        )

    def logprobs_body(self, entries, offset):
        """OpenAI's legacy shape: parallel lists, and each token's text offset in the choice."""
        offsets = []
        for entry in entries:
            offsets.append(offset)
            offset += len(entry.token)
        return completions.CompletionLogprobs(
            tokens=[e.token for e in entries],
            token_logprobs=[e.logprob for e in entries],
            top_logprobs=[{token: logprob for token, logprob, _ in e.top} for e in entries],
            text_offset=offsets,
        )
