"""POST /v1/embeddings (OpenAI's shape) and POST /v1/rerank (Jina's and Cohere's shape)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from inference.api.protocol.base import Bool, Int, Request, Shape, explain, fail, parse
from inference.api.protocol.common import ModelName, texts_or_token_lists
from inference.requests import EmbeddingRequest, RerankRequest

MAX_INPUTS = 2048
MAX_DOCUMENTS = 1024

MISSING_MODEL = {"model": "name the loaded model (see GET /v1/models)."}


class EmbeddingsRequest(Request):
    missing = {**MISSING_MODEL, "input": "the text (or texts) to embed."}

    model: ModelName
    input: Annotated[
        str | list[int] | list[str | list[int]],
        explain("must be a string, a list of strings or a list of token id lists."),
    ]
    encoding_format: Annotated[Literal["float", "base64"], explain("must be 'float' or 'base64'.")] = "float"
    dimensions: Int(1, 1_000_000) | None = None

    @model_validator(mode="after")
    def _input_rules(self):
        inputs = self.inputs()
        if not inputs:
            raise fail("Field 'input' must be a string, a list of strings or a list of token id lists.")
        if len(inputs) > MAX_INPUTS:
            raise fail(f"Field 'input' takes at most {MAX_INPUTS} items; send them in several requests.")
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                if not item:
                    raise fail(f"input[{i}] is empty.")
            elif not item or min(item) < 0:
                raise fail(f"input[{i}] must be a non-empty string or a list of token ids.")
        return self

    def inputs(self) -> list:
        return texts_or_token_lists(self.input)

    def to_embedding_request(self) -> EmbeddingRequest:
        return EmbeddingRequest(
            self.model.strip(), self.inputs(), self.encoding_format, self.dimensions, self.keep_alive
        )


class DocumentText(Shape):
    text: str


Document = Annotated[str | DocumentText, explain("{field} must be a non-empty string or {'text': '...'}.")]


class RerankingRequest(Request):
    missing = {
        **MISSING_MODEL,
        "query": "the text the documents are ranked against.",
        "documents": "a list of strings.",
    }

    model: ModelName
    query: Annotated[str, Field(min_length=1), explain("must be a non-empty string.")]
    documents: Annotated[list[Document], Field(min_length=1, max_length=MAX_DOCUMENTS)]
    top_n: Int(1, MAX_DOCUMENTS) | None = None
    return_documents: Bool = False

    @model_validator(mode="after")
    def _rules(self):
        if not self.query.strip():
            raise fail("Field 'query' must be a non-empty string.")
        for i, doc in enumerate(self.texts()):
            if not doc:
                raise fail(f"documents[{i}] must be a non-empty string.")
        return self

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]

    def to_rerank_request(self) -> RerankRequest:
        return RerankRequest(
            self.model.strip(), self.query, self.texts(), self.top_n, self.return_documents, self.keep_alive
        )


def embedding_request(data: dict) -> EmbeddingRequest:
    return parse(EmbeddingsRequest, data).to_embedding_request()


def rerank_request(data: dict) -> RerankRequest:
    return parse(RerankingRequest, data).to_rerank_request()


# --- responses --------------------------------------------------------------------------------


class TokenUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or little-endian float32 in base64.")


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: TokenUsage


class RankedDocument(BaseModel):
    index: int
    relevance_score: float
    document: DocumentText | None = Field(None, exclude_if=lambda value: value is None)


class RerankResult(BaseModel):
    id: str
    object: Literal["list"] = "list"
    model: str
    results: list[RankedDocument]
    usage: TokenUsage
    method: Literal["reranker-yes-no", "embedding-cosine"] = Field(
        description="How the documents were scored: a reranker's yes/no answer, or the cosine of "
        "embeddings (a model that is not a reranker)."
    )
