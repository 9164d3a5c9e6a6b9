"""Services and selectors for stored Responses-API responses (sync: call them through
database_sync_to_async)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from inference.models import StoredResponse


def stored_response_create(
    *, response_id: str, model: str, previous_response_id: str, body: dict, conversation: list
) -> None:
    StoredResponse.objects.create(
        response_id=response_id,
        model=model,
        previous_response_id=previous_response_id or "",
        body=body,
        conversation=conversation,
    )


def stored_response_get(*, response_id: str) -> StoredResponse | None:
    return StoredResponse.objects.filter(response_id=response_id).first()


def stored_response_delete(*, response_id: str) -> bool:
    deleted, _ = StoredResponse.objects.filter(response_id=response_id).delete()
    return deleted > 0


def stored_responses_purge(*, days: int) -> int:
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = StoredResponse.objects.filter(created_at__lt=cutoff).delete()
    return deleted
