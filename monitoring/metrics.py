"""Prometheus exposition. Counters move with traffic; gauges are read at scrape time from
the engine's own state, so a scrape never loads or wakes a model."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "lmx_requests_total", "Completed inference requests", ["endpoint", "finish_reason"], registry=REGISTRY
)
ERRORS = Counter("lmx_errors_total", "Error-coded responses", ["code"], registry=REGISTRY)
PROMPT_TOKENS = Counter("lmx_prompt_tokens_total", "Prompt tokens processed", registry=REGISTRY)
CACHED_TOKENS = Counter(
    "lmx_prompt_cached_tokens_total", "Prompt tokens served from the prompt cache", registry=REGISTRY
)
CACHE_LOOKUPS = Counter(
    "lmx_prompt_cache_lookups_total",
    "Prompts by the prompt-cache tier that served them (ram, disk, none) and how they left the "
    "cache (full, extends, diverged, block, new)",
    ["tier", "reason"],
    registry=REGISTRY,
)
DISK_CACHE_BYTES = Gauge("lmx_prompt_cache_disk_bytes", "The prompt caches' disk tier", registry=REGISTRY)
GENERATED_TOKENS = Counter("lmx_generated_tokens_total", "Tokens generated", registry=REGISTRY)
TTFT = Histogram(
    "lmx_time_to_first_token_seconds",
    "Time to first token",
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
LATENCY = Histogram(
    "lmx_request_duration_seconds",
    "Inference request duration",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
ACTIVE = Gauge("lmx_active_requests", "Requests running or queued in the engine", registry=REGISTRY)
QUEUED = Gauge("lmx_queued_requests", "Requests waiting for a batch slot", registry=REGISTRY)
MEMORY_USED = Gauge("lmx_memory_used_bytes", "Accelerator memory used by MLX", registry=REGISTRY)
MEMORY_TOTAL = Gauge("lmx_memory_total_bytes", "Accelerator memory in total", registry=REGISTRY)
RANK_MEMORY_USED = Gauge(
    "lmx_rank_memory_used_bytes",
    "Memory used by MLX on each rank of a distributed group",
    ["rank"],
    registry=REGISTRY,
)
ENGINE_RSS = Gauge("lmx_engine_resident_bytes", "The engine process's resident memory", registry=REGISTRY)
MODEL_LOADED = Gauge("lmx_model_loaded", "1 for each resident model", ["model"], registry=REGISTRY)
MODEL_MEMORY = Gauge(
    "lmx_model_memory_bytes", "Memory a resident model took at load", ["model"], registry=REGISTRY
)
MODEL_ACTIVE = Gauge(
    "lmx_model_active_requests",
    "Requests running or queued on a resident model",
    ["model"],
    registry=REGISTRY,
)
MODEL_REQUESTS = Counter(
    "lmx_model_requests_total", "Completed inference requests by model", ["model"], registry=REGISTRY
)


def observe_completion(endpoint: str, finish_reason: str, stats, *, model: str = "") -> None:
    REQUESTS.labels(endpoint, finish_reason).inc()
    if model:
        MODEL_REQUESTS.labels(model).inc()
    PROMPT_TOKENS.inc(stats.prompt_tokens - stats.cached_tokens)
    CACHED_TOKENS.inc(stats.cached_tokens)
    if stats.prompt_cache:
        CACHE_LOOKUPS.labels(stats.prompt_cache["tier"], stats.prompt_cache["reason"]).inc()
    GENERATED_TOKENS.inc(stats.completion_tokens)
    if stats.time_to_first_token_ms is not None:
        TTFT.observe(stats.time_to_first_token_ms / 1000)
    LATENCY.observe(stats.total_ms / 1000)


def observe_error(code: str) -> None:
    ERRORS.labels(code).inc()


def render() -> bytes:
    from inference import memory
    from inference.runtime import get_engine

    engine = get_engine()
    ACTIVE.set(engine.active_requests)
    QUEUED.set(engine.queued_requests)
    mem = memory.snapshot()
    MEMORY_USED.set(mem["active_gb"] * 1e9)
    MEMORY_TOTAL.set(mem["total_gb"] * 1e9)
    ENGINE_RSS.set(mem["engine_rss_gb"] * 1e9)
    DISK_CACHE_BYTES.set(engine.counters.disk_cache_bytes)
    RANK_MEMORY_USED.clear()
    for rank, used in enumerate(engine.memory.ranks):
        RANK_MEMORY_USED.labels(str(rank)).set(used)
    for gauge in (MODEL_LOADED, MODEL_MEMORY, MODEL_ACTIVE):
        gauge.clear()
    for loaded in engine.models:
        MODEL_LOADED.labels(loaded.spec.id).set(1)
        MODEL_MEMORY.labels(loaded.spec.id).set(loaded.vram_bytes)
        MODEL_ACTIVE.labels(loaded.spec.id).set(engine.active_for(loaded.spec.path))
    return generate_latest(REGISTRY)
