"""Hooks for the schemathesis run over /openapi.json (tests/e2e/test_schemathesis.py): half of
the generated `model` fields name the resident model, so valid bodies reach generation rather than
a 404, and token budgets are kept small, so each generation is short on a 2-core CPU."""

import os

import schemathesis

MODEL = os.environ.get("LMX_FUZZ_MODEL", "")
BUDGETS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n", "top_logprobs")
# the budget each generating operation gets when the body gives none (the model's whole context)
DEFAULT_BUDGET = {
    "/v1/chat/completions": "max_tokens",
    "/v1/completions": "max_tokens",
    "/v1/responses": "max_output_tokens",
}


@schemathesis.hook
def map_body(ctx, body):
    if not isinstance(body, dict):
        return body
    if MODEL and isinstance(body.get("model"), str) and len(body["model"]) % 2 == 0:
        body["model"] = MODEL
    for key in BUDGETS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 4:
            body[key] = 4
    operation = getattr(ctx, "operation", None)
    budget = DEFAULT_BUDGET.get(getattr(operation, "path", ""))
    if budget and budget not in body and "max_completion_tokens" not in body:
        body[budget] = 4
    return body
