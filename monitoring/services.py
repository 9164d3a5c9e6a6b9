"""Writes of the monitoring app: error history and model inventory."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from monitoring.models import ErrorEvent, ModelRecord


def error_event_record(
    *,
    code: str,
    severity: str,
    message: str,
    model: str = "",
    endpoint: str = "",
    http_status: int | None = None,
) -> ErrorEvent:
    event = ErrorEvent.objects.create(
        code=code,
        severity=severity,
        message=_storable(message)[:4000],
        model=_storable(model)[:300],
        endpoint=_storable(endpoint)[:200],
        http_status=http_status,
    )
    from monitoring import events

    events.publish(events.error_payload(event))
    return event


@transaction.atomic
def inventory_sync(*, specs: list[dict], loaded_ids: list[str]) -> None:
    """Make the inventory match a scan: upsert what is on disk, mark the rest absent."""
    seen = []
    for spec in specs:
        ModelRecord.objects.update_or_create(
            model_id=spec["id"],
            defaults={
                **_identity(spec),
                "quantization": spec["quantization"] or "",
                "architecture": spec["architecture"] or "",
                "parameter_count": spec["parameter_count"],
                "present": True,
                "loaded": spec["id"] in loaded_ids,
            },
        )
        seen.append(spec["id"])
    ModelRecord.objects.exclude(model_id__in=seen).update(present=False, loaded=False)


@transaction.atomic
def inventory_record_load(*, spec: dict, load_time_ms: int) -> ModelRecord:
    record, _ = ModelRecord.objects.get_or_create(
        model_id=spec["id"],
        defaults=_identity(spec),
    )
    record.loaded = True
    record.present = True
    record.load_count += 1
    record.last_loaded_at = timezone.now()
    record.last_load_time_ms = load_time_ms
    record.save()
    return record


def inventory_record_unload(*, model_id: str | None) -> None:
    qs = ModelRecord.objects.filter(loaded=True)
    if model_id:
        qs = qs.filter(model_id=model_id)
    qs.update(loaded=False)


def _storable(text: str) -> str:
    """Text a database can hold: a lone surrogate (from a path or a name a client sent) becomes U+FFFD."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _identity(spec: dict) -> dict:
    """Where a model is and what it is, as the store describes it."""
    return {key: spec[key] for key in ("path", "format", "source", "size_bytes")}
