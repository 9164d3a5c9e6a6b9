"""Reads of the monitoring app."""

from monitoring.models import ErrorEvent, ModelRecord


def error_events_recent(*, limit: int = 50, code: str | None = None) -> list[ErrorEvent]:
    qs = ErrorEvent.objects.all()
    if code:
        qs = qs.filter(code=code)
    return list(qs[:limit])


def inventory_by_id() -> dict[str, ModelRecord]:
    return {r.model_id: r for r in ModelRecord.objects.all()}
