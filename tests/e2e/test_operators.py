"""What operators use: the Django admin console, Prometheus metrics, retention."""

import re
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MLX_ID


def _metrics(srv) -> dict[str, float]:
    text = httpx.get(srv.url + "/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def test_metrics_parse_and_move_with_real_traffic(server):
    before = _metrics(server)
    with server.client() as http:
        ok = http.post(
            "/v1/chat/completions",
            json={
                "model": MLX_ID,
                "temperature": 0,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        ).json()
        http.post("/v1/chat/completions", json={"model": "absent", "messages": []})
    after = _metrics(server)
    done = (
        "lmx_requests_total{endpoint=/v1/chat/completions,finish_reason="
        + ok["choices"][0]["finish_reason"]
        + "}"
    )
    assert after[done] == before.get(done, 0) + 1
    assert (
        after["lmx_generated_tokens_total{}"] - before["lmx_generated_tokens_total{}"]
        == ok["usage"]["completion_tokens"]
    )
    assert (
        after["lmx_errors_total{code=invalid-request}"]
        == before.get("lmx_errors_total{code=invalid-request}", 0) + 1
    )
    assert (
        after["lmx_time_to_first_token_seconds_count{}"]
        == before["lmx_time_to_first_token_seconds_count{}"] + 1
    )
    assert after[f"lmx_model_loaded{{model={MLX_ID}}}"] == 1
    assert after["lmx_memory_total_bytes{}"] > after["lmx_memory_used_bytes{}"] > 0
    assert after["lmx_active_requests{}"] == 0


def test_metrics_never_load_a_model(make_server):
    srv = make_server()
    assert "lmx_model_loaded{" not in httpx.get(srv.url + "/metrics").text
    assert httpx.get(srv.url + "/readyz").status_code == 503


def _login(srv, client: httpx.Client) -> None:
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": "ops", "password": "a-long-operator-password"},
        headers={"Referer": srv.url + "/admin/login/"},
    )
    assert r.status_code in (200, 302)


def test_admin_console_shows_errors_and_models_to_operators_only(make_server):
    srv = make_server(default_model=MLX_ID, wait_ready=True)
    env_user = {"DJANGO_SUPERUSER_PASSWORD": "a-long-operator-password"}
    srv.env.update(env_user)
    srv.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com")
    httpx.post(srv.url + "/admin/models/load", json={"model": "no-such-model"})
    httpx.get(srv.url + "/admin/models")

    with httpx.Client(base_url=srv.url, follow_redirects=False) as anonymous:
        r = anonymous.get("/admin/monitoring/errorevent/")
        assert r.status_code == 302 and "/admin/login/" in r.headers["location"]

    with httpx.Client(base_url=srv.url, follow_redirects=True) as http:
        _login(srv, http)
        errors = http.get("/admin/monitoring/errorevent/?code=model-not-found")
        assert errors.status_code == 200
        assert "model-not-found" in errors.text and "no-such-model" in errors.text
        assert "By code" in errors.text and "By severity" in errors.text  # the filters
        search = http.get("/admin/monitoring/errorevent/?q=no-such-model")
        assert "1 error event" in search.text
        models = http.get("/admin/monitoring/modelrecord/")
        assert models.status_code == 200 and MLX_ID in models.text
        # a response stored by the Responses API is listed, and purged by age
        stored = http.post(
            "/v1/responses", json={"model": MLX_ID, "input": "Hi", "max_output_tokens": 2}
        ).json()
        responses = http.get("/admin/inference/storedresponse/")
        assert responses.status_code == 200 and stored["id"] in responses.text
    out = srv.manage("lmx_purge_responses", "--days", "0").stdout
    assert "Deleted 1 stored responses older than 0 days." in out
    assert httpx.get(f"{srv.url}/v1/responses/{stored['id']}").status_code == 404


def test_purge_command_keeps_recent_error_events(make_server, server_db):
    from django.utils import timezone

    from monitoring.models import ErrorEvent

    srv = make_server()
    httpx.post(srv.url + "/admin/models/load", json={"model": "old-one"})
    httpx.post(srv.url + "/admin/models/load", json={"model": "new-one"})
    alias = server_db(srv)
    ErrorEvent.objects.using(alias).filter(model="old-one").update(
        created_at=timezone.now() - timedelta(days=40)
    )
    out = srv.manage("lmx_purge_errors", "--days", "30").stdout
    assert "Deleted 1 error events older than 30 days." in out
    assert list(ErrorEvent.objects.using(alias).values_list("model", flat=True)) == ["new-one"]


def test_recent_errors_endpoint_lists_newest_first_with_console_links(make_server, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server()
    with srv.client() as http:
        http.post("/admin/models/load", json={"model": "first-missing"})
        http.post("/admin/models/load", json={})
        listed = http.get("/admin/errors", params={"limit": 2}).json()["errors"]
        assert [e["code"] for e in listed] == ["invalid-request", "model-not-found"]
        rows = ErrorEvent.objects.using(server_db(srv)).order_by("-id")[:2]
        assert [e["id"] for e in listed] == [row.id for row in rows]
        assert listed[1]["admin_url"] == f"/admin/monitoring/errorevent/{rows[1].id}/change/"
        assert listed[1]["model"] == "first-missing" and listed[1]["severity"] == "warning"
        only = http.get("/admin/errors", params={"code": "model-not-found"}).json()["errors"]
        assert {e["code"] for e in only} == {"model-not-found"}
        for bad in ("0", "x", "501", "-1"):
            r = http.get("/admin/errors", params={"limit": bad})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-request"
        r = http.post("/admin/errors", json={})
        assert r.status_code == 405 and r.json()["error"]["code"] == "invalid-request"
        assert http.get("/healthz").status_code == 200
    recorded = ErrorEvent.objects.using(server_db(srv)).filter(endpoint="GET /admin/errors")
    assert recorded.count() == 4


def test_dashboard_page_and_its_assets_are_served(server):
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert 'data-heartbeat-s="5.0"' in page.text
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
            r = http.get(asset)
            assert r.status_code == 200 and len(r.content) > 1000, asset
        assert http.post("/", content=b"").status_code == 405
