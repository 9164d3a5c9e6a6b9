"""The dashboard at `/`, in a real headless Chromium against a real LMX serving real models."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import GGUF_ID, MLX_ID, wait_for
from tests.fake_hub import FakeHub

pytestmark = pytest.mark.timeout(300)

GREEN, AMBER, RED = "rgb(47, 179, 109)", "rgb(240, 160, 32)", "rgb(229, 72, 77)"


def gauge(page) -> tuple[float, float, float]:
    """(percent, used GB, total GB) as the gauge shows them."""
    pct = float(page.inner_text("#gauge-pct").rstrip("%"))
    used, total = re.match(r"([\d.]+) / ([\d.]+) GB", page.inner_text("#gauge-used")).groups()
    return pct, float(used), float(total)


def arc_colour(page) -> str:
    return page.eval_on_selector("#gauge-arc", "el => getComputedStyle(el).stroke")


def model_row(page, model_id: str):
    return page.locator(f'#models-table tr[data-model="{model_id}"]')


def record_gauge_levels(page) -> None:
    """Keep every colour level the gauge takes, so a short-lived red is not missed."""
    page.evaluate(
        """() => {
        window.gaugeLevels = [];
        const g = document.getElementById('gauge');
        new MutationObserver(() => window.gaugeLevels.push(g.dataset.level))
            .observe(g, {attributes: true, attributeFilter: ['data-level']});
    }"""
    )


def test_page_shows_the_servers_memory_models_and_health_without_console_errors(server, open_dashboard):
    dash = open_dashboard(server)
    page = dash.page
    badge = page.locator("#health")
    expect(badge).to_have_attribute("data-state", "connected")
    expect(badge).to_contain_text("up ")
    expect(page.locator("#token-dialog")).not_to_be_visible()  # no token configured: nothing asked

    with server.client() as http:
        mem = http.get("/admin/memory").json()
        listed = http.get("/admin/models").json()["models"]
    expect(page.locator("#gauge-thresholds")).to_have_text(
        f"warning {mem['warning_pct']:g}% · critical {mem['critical_pct']:g}%"
    )
    pct, used, total = gauge(page)
    assert pct == pytest.approx(mem["pct"], abs=0.5)
    assert used == pytest.approx(mem["vram_used_gb"], abs=0.05)
    assert total == pytest.approx(mem["vram_total_gb"], abs=0.1)
    assert used > 0.05  # the default model is resident
    assert arc_colour(page) == GREEN
    cache = mem["prompt_cache"]
    expect(page.locator("#prompt-cache")).to_have_text(
        re.compile(r"prompt cache: [\d.]+% of prompt tokens cached · disk [\d.]+ GB \(\d+ blocks\)")
    )
    shown = re.search(r"([\d.]+)% of", page.inner_text("#prompt-cache")).group(1)
    assert float(shown) == pytest.approx(cache["hit_rate"] * 100, abs=0.1)

    # every model on disk, with what the API says about it
    expect(page.locator("#models-table tr[data-model]")).to_have_count(len(listed))
    for m in listed:
        row = model_row(page, m["id"])
        expect(row.locator("td").nth(1)).to_have_text(m["format"])
        expect(row.locator("td").nth(3)).to_have_text(m["quantization"] or "–")
    expect(model_row(page, MLX_ID).locator(".state")).to_have_text("loaded")
    expect(model_row(page, MLX_ID).get_by_role("button")).to_have_text("Unload")
    expect(model_row(page, GGUF_ID).locator(".state")).to_have_text("idle")
    expect(page.locator("#loaded-model")).to_contain_text(MLX_ID)
    assert dash.console_errors == []


def test_gauge_turns_amber_at_the_warning_threshold(server, open_dashboard):
    dash = open_dashboard(server)
    page = dash.page
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    expect(page.locator("#gauge")).to_have_attribute("data-level", "ok")
    pct, _, _ = gauge(page)
    with server.client() as http:
        try:
            warning = round(pct / 2, 3)
            http.post("/admin/memory", json={"warning_pct": warning, "critical_pct": 99})
            expect(page.locator("#gauge")).to_have_attribute("data-level", "warning")
            expect(page.locator("#gauge-thresholds")).to_have_text(f"warning {warning:g}% · critical 99%")
            expect(page.locator("#memory-alert")).to_contain_text("warning threshold")
            assert wait_for(lambda: arc_colour(page) == AMBER, timeout=5)
        finally:
            http.post("/admin/memory", json={"warning_pct": 85, "critical_pct": 90})
    expect(page.locator("#gauge")).to_have_attribute("data-level", "ok")
    assert dash.console_errors == []


def test_recent_errors_arrive_live_and_link_to_the_admin_console(server, server_db, open_dashboard):
    from monitoring.models import ErrorEvent

    dash = open_dashboard(server)
    page = dash.page
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    with server.client() as http:
        reply = http.post("/admin/models/load", json={"model": "no-such-model-anywhere"})
    assert reply.status_code == 404
    newest = page.locator("#errors-list li").first
    expect(newest).to_have_attribute("data-code", "model-not-found")
    expect(newest.locator(".sev")).to_have_text("warning")
    expect(newest.locator(".message")).to_have_text(reply.json()["error"]["message"])
    row = ErrorEvent.objects.using(server_db(server)).filter(code="model-not-found").latest("id")
    expect(newest.locator("a")).to_have_attribute("href", f"/admin/monitoring/errorevent/{row.id}/change/")

    # a fresh page lists it too (from /admin/errors, not only from the live stream)
    page.reload()
    expect(page.locator("#errors-list li").first).to_have_attribute("data-code", "model-not-found")
    # the link leads to the Django admin (its login page for a visitor who is not signed in)
    with page.context.expect_page() as opened:
        page.locator("#errors-list li a").first.click()
    console = opened.value
    console.wait_for_load_state()
    assert "/admin/login/" in console.url
    assert f"errorevent/{row.id}/change" in console.url.replace("%2F", "/")
    expect(console.locator("#site-name")).to_contain_text("LMX console")
    assert dash.console_errors == []


def blue_pixels_above_baseline(page) -> int:
    """Pixels of the graph's line drawn above the zero line: nonzero only when tok/s > 0 was plotted."""
    return page.evaluate(
        """() => {
        const c = document.getElementById('throughput-graph');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const dpr = window.devicePixelRatio || 1;
        const baseline = Math.floor(c.height - 14 * dpr) - 3 * dpr;
        let n = 0;
        for (let y = 0; y < baseline; y++) for (let x = Math.floor(34 * dpr); x < c.width; x++) {
            const i = (y * c.width + x) * 4;
            if (d[i] < 120 && d[i + 1] > 130 && d[i + 2] > 220) n++;
        }
        return n;
    }"""
    )


def test_playground_streams_the_answer_with_ttft_and_speed_and_the_graph_moves(server, open_dashboard):
    dash = open_dashboard(server)
    page = dash.page
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    expect(model_row(page, MLX_ID).locator(".state")).to_have_text("loaded")
    assert blue_pixels_above_baseline(page) == 0  # idle: a flat line

    page.fill("#chat-temp", "0")
    page.fill("#chat-max", "24")
    page.fill("#chat-input", "What is the capital of France?")
    page.click("#chat-send")
    answer = page.locator("#chat-log .msg.assistant").first
    expect(page.locator("#chat-send")).to_be_enabled(timeout=60_000)
    expect(answer).to_contain_text("Paris")
    ttft = float(page.inner_text("#chat-ttft"))
    tps = float(page.inner_text("#chat-tps"))
    tokens = int(page.inner_text("#chat-tokens"))
    assert 0 < ttft < 60_000
    assert tps > 0
    # the token count is the server's own, as its completion log line reports it
    logged = wait_for(lambda: re.findall(r"Completion request model=\S+ tokens=(\d+)", server.stdout()))
    assert tokens == int(logged[-1])

    # a longer second turn: the graph and the readout move while it streams
    page.fill("#chat-temp", "0.8")
    page.fill("#chat-max", "96")
    page.fill("#chat-input", "Now write a long story about a dragon who visits that city.")
    page.click("#chat-send")
    expect(page.locator("#chat-stop")).to_be_enabled()
    assert wait_for(lambda: float(page.inner_text("#throughput-now")) > 0, timeout=30)
    assert wait_for(lambda: blue_pixels_above_baseline(page) > 0, timeout=10)
    assert wait_for(lambda: page.inner_text("#throughput-active") == "1", timeout=10)
    expect(model_row(page, MLX_ID).locator(".state")).to_have_text("inferring")
    dash.shot("dashboard.png")
    expect(page.locator("#chat-send")).to_be_enabled(timeout=120_000)
    assert float(page.inner_text("#throughput-peak")) > 0
    assert len(page.locator("#chat-log .msg.assistant").nth(1).inner_text()) > 20
    assert dash.console_errors == []


def test_phone_width_keeps_every_panel_and_control_in_view(server, open_dashboard):
    dash = open_dashboard(server, width=390, height=844)
    page = dash.page
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    button = model_row(page, MLX_ID).get_by_role("button")
    expect(button).to_be_visible()
    box = button.bounding_box()
    assert box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    for panel in ("#memory-card", "#throughput-card", "#models-card", "#playground-card", "#errors-card"):
        assert page.locator(panel).bounding_box()["width"] <= 390
    dash.shot("dashboard-phone.png")
    assert dash.console_errors == []


def test_load_and_unload_from_the_page_change_the_list_and_the_gauge(
    make_server, open_dashboard, model_store, tmp_path
):
    broken = tmp_path / "extra" / "Broken-Model"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text('{"model_type": "llama"}')
    (broken / "model.safetensors").write_bytes(b"\xff" * 64)
    srv = make_server(default_model=MLX_ID, wait_ready=True, env={"LMX_EXTRA_MODEL_DIRS": str(broken.parent)})
    dash = open_dashboard(srv)
    page = dash.page
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    expect(model_row(page, MLX_ID).locator(".state")).to_have_text("loaded")
    _, used_loaded, _ = gauge(page)

    model_row(page, MLX_ID).get_by_role("button", name="Unload").click()
    expect(model_row(page, MLX_ID).locator(".state")).to_have_text("idle")
    expect(model_row(page, MLX_ID).get_by_role("button")).to_have_text("Load")
    expect(page.locator("#loaded-model")).to_have_text("no model loaded")
    # the model is most of what MLX holds: 0.1 GB quantized, 0.5 GB on the float32 CPU path
    assert wait_for(lambda: gauge(page)[1] < used_loaded / 2, timeout=10)
    _, used_empty, _ = gauge(page)
    with srv.client() as http:
        assert http.get("/readyz").status_code == 503

    model_row(page, GGUF_ID).get_by_role("button", name="Load").click()
    expect(model_row(page, GGUF_ID).locator(".state")).to_contain_text("loading")
    expect(model_row(page, GGUF_ID).locator(".state .spinner")).to_be_visible()
    expect(model_row(page, GGUF_ID).locator(".state")).to_have_text("loaded", timeout=120_000)
    expect(page.locator("#loaded-model")).to_contain_text(GGUF_ID)
    assert wait_for(lambda: gauge(page)[1] > used_empty + used_loaded / 2, timeout=10)  # same weights
    with srv.client() as http:
        assert http.get("/readyz").json()["model"] == GGUF_ID

    # a broken model: the page shows the server's error, and the loaded model stays loaded
    model_row(page, "Broken-Model").get_by_role("button", name="Load").click()
    error = page.locator("#models-error")
    expect(error).to_be_visible()
    expect(error.locator("code")).to_have_text("invalid-request")
    expect(error).to_contain_text("Broken-Model cannot be loaded")
    expect(model_row(page, GGUF_ID).locator(".state")).to_have_text("loaded")
    expect(page.locator("#errors-list li").first).to_have_attribute("data-code", "invalid-request")

    # the guardian at critical: the gauge turns red, the alert says why, the idle model is evicted
    record_gauge_levels(page)
    with srv.client() as http:
        http.post("/admin/memory", json={"warning_pct": 0.001, "critical_pct": 0.002})
    expect(page.locator("#memory-alert")).to_have_class(re.compile("critical"))
    expect(page.locator("#memory-alert")).to_contain_text(f"evicted {GGUF_ID}, idle")
    expect(model_row(page, GGUF_ID).locator(".state")).to_have_text("idle")
    assert "critical" in page.evaluate("window.gaugeLevels")
    expect(page.locator("#errors-list li").first).to_have_attribute("data-code", "insufficient-memory")
    assert not [e for e in dash.console_errors if "uncaught" in e]


def test_health_badge_goes_stale_without_heartbeats_and_reconnects_by_itself(make_server, open_dashboard):
    env = {"LMX_EVENTS_HEARTBEAT_S": "1"}
    srv = make_server(env=env)
    dash = open_dashboard(srv)
    page = dash.page
    badge = page.locator("#health")
    expect(badge).to_have_attribute("data-state", "connected")

    srv.pause()  # the process hangs: the connection stays open, nothing arrives
    try:
        expect(badge).to_have_attribute("data-state", "stale", timeout=10_000)
        expect(badge).to_contain_text("no heartbeat")
    finally:
        srv.resume()
    expect(badge).to_have_attribute("data-state", "connected", timeout=10_000)

    port = srv.port
    srv.stop()  # the server goes away: disconnected, retrying with back-off
    expect(badge).to_have_attribute("data-state", "disconnected", timeout=10_000)
    expect(badge).to_contain_text("retry in")
    make_server(env=env, port=port)  # back on the same address
    expect(badge).to_have_attribute("data-state", "connected", timeout=60_000)
    assert not [e for e in dash.console_errors if "uncaught" in e]


def test_admin_token_is_asked_once_and_kept_for_the_browser_session(make_server, open_dashboard):
    srv = make_server(env={"LMX_ADMIN_TOKEN": "s3cret-token"})
    dash = open_dashboard(srv)
    page = dash.page
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#health")).to_contain_text("admin token needed")

    page.fill("#token-input", "wrong")
    page.click("#token-save")
    expect(dialog).to_be_visible()  # refused: asked again, with the server's reason
    expect(page.locator("#token-reason")).to_contain_text("Bearer")

    page.fill("#token-input", "s3cret-token")
    page.click("#token-save")
    expect(dialog).not_to_be_visible()
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    expect(model_row(page, MLX_ID)).to_be_visible()
    expect(page.locator("#token-button")).to_have_text("Admin token ✓")

    page.reload()  # same browser session: not asked again
    expect(page.locator("#health")).to_have_attribute("data-state", "connected")
    expect(dialog).not_to_be_visible()
    expect(model_row(page, MLX_ID)).to_be_visible()

    other = open_dashboard(srv)  # a new browser session asks again
    expect(other.page.locator("#token-dialog")).to_be_visible()


def test_a_hub_download_shows_its_progress_then_the_model(make_server, open_dashboard, model_store):
    """`downloading` model events (from `lmx pull` or a load of a hub id) draw a progress row that
    becomes the model's own row once the files are whole."""
    repo = "lmx-test/SmolLM2-page-mirror"
    files = {p.name: p for p in (model_store / MLX_ID).iterdir() if p.is_file()}
    hub = FakeHub({}, files={repo: files}, bytes_per_s=sum(p.stat().st_size for p in files.values()) / 5)
    try:
        srv = make_server(env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
        dash = open_dashboard(srv)
        page = dash.page
        expect(page.locator("#health")).to_have_attribute("data-state", "connected")
        pull = threading.Thread(
            target=lambda: httpx.post(srv.url + "/admin/models/pull", json={"model": repo}, timeout=120)
        )
        pull.start()
        row = page.locator(f'#models-table tr[data-download="{repo}"]')
        expect(row.locator(".state")).to_contain_text("downloading")
        shown = [float(row.locator("progress").get_attribute("value"))]
        wait_for(lambda: float(row.locator("progress").get_attribute("value") or 0) > shown[0], timeout=10)
        shown.append(float(row.locator("progress").get_attribute("value")))
        assert shown[1] > shown[0]  # it moves while the bytes come
        pull.join(timeout=120)
        expect(row).to_have_count(0)
        expect(model_row(page, repo).locator(".state")).to_have_text("idle")
        assert not dash.console_errors
    finally:
        hub.close()


def test_a_distributed_group_shows_its_ranks_and_then_the_rank_it_lost(make_server, open_dashboard, tmp_path):
    import signal

    from benchmarks.random_model import TINY_LLAMA, build
    from tests.e2e.test_distributed import _followers

    store = tmp_path / "group-store"
    build("llama-3.1-8b", store / "tiny-llama", overrides={**TINY_LLAMA, "vocab_size": 512})
    srv = make_server(
        models_dir=store, default_model="tiny-llama", serve_args=("--ranks", "2"), wait_ready=True
    )
    dash = open_dashboard(srv)
    page = dash.page
    line = page.locator("#models-group")
    expect(line).to_be_visible()
    expect(line).to_contain_text("group: 2 ranks (ring)")
    expect(line).to_contain_text("sharding auto")
    expect(line).to_contain_text(re.compile(r"rank 0 [\d.]+ GB · rank 1 [\d.]+ GB"))
    expect(model_row(page, "tiny-llama").locator(".state")).to_have_text("loaded")

    (follower,) = _followers(srv)
    follower.send_signal(signal.SIGKILL)
    # from the launcher ("exited with code -9") or from the ring ("was lost"), whichever is first
    expect(line).to_contain_text(re.compile(r"LOST: rank 1 (exited with code -9|was lost)"), timeout=15_000)
    expect(line).to_have_class(re.compile("alert"))
    expect(model_row(page, "tiny-llama").locator(".state")).to_have_text("idle")
    assert not [e for e in dash.console_errors if "uncaught" in e]
