"""What the inference API keeps: responses stored by the Responses API (`store`, the default), so
that `previous_response_id` continues a conversation and GET/DELETE /v1/responses/{id} work."""

from django.db import models


class StoredResponse(models.Model):
    response_id = models.CharField(max_length=64, primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    model = models.CharField(max_length=300)
    previous_response_id = models.CharField(max_length=64, blank=True, default="")
    body = models.JSONField(help_text="The response object as the API returned it.")
    conversation = models.JSONField(
        help_text="The chat so far (without instructions), the response's output last: what a next turn continues."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.response_id
