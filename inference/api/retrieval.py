"""/v1/embeddings (OpenAI's shape) and /v1/rerank (Jina's and Cohere's shape)."""

from __future__ import annotations

import base64
import struct

from inference import retrieval, serving
from inference.api.protocol import retrieval as protocol
from lmx_site.consumers import JsonConsumer


def _encode(vector: list[float], encoding_format: str):
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


class _OnLoadedModel(JsonConsumer):
    methods = ("POST",)

    async def loaded(self, name: str, keep_alive: float | None):
        """The resident model `name` names; errors before that are recorded under `name`."""
        self.model_name = name
        loaded = await serving.ensure_model(name, keep_alive=keep_alive)
        self.model_name = loaded.spec.id
        return loaded


class EmbeddingsConsumer(_OnLoadedModel):
    async def post(self, body: bytes) -> None:
        req = protocol.embedding_request(self.parse_json(body))
        loaded = await self.loaded(req.model, req.keep_alive)
        vectors, tokens = await retrieval.embed(loaded, req.inputs)
        data = [
            protocol.Embedding(
                index=i, embedding=_encode(retrieval.shorten(v, req.dimensions), req.encoding_format)
            )
            for i, v in enumerate(vectors)
        ]
        usage = protocol.TokenUsage(prompt_tokens=tokens, total_tokens=tokens)
        answer = protocol.EmbeddingList(data=data, model=loaded.spec.id, usage=usage)
        await self.send_json(answer.model_dump(mode="json"))


class RerankConsumer(_OnLoadedModel):
    async def post(self, body: bytes) -> None:
        req = protocol.rerank_request(self.parse_json(body))
        loaded = await self.loaded(req.model, req.keep_alive)
        scores, tokens, method = await retrieval.rerank(loaded, req.query, req.documents)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[: req.top_n]
        results = [
            protocol.RankedDocument(
                index=i,
                relevance_score=scores[i],
                document=protocol.DocumentText(text=req.documents[i]) if req.return_documents else None,
            )
            for i in ranked
        ]
        answer = protocol.RerankResult(
            id=serving.new_id("rerank"),
            model=loaded.spec.id,
            results=results,
            usage=protocol.TokenUsage(prompt_tokens=tokens, total_tokens=tokens),
            method=method,
        )
        await self.send_json(answer.model_dump(mode="json"))
