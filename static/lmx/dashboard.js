// LMX dashboard: live data from /admin/events (read with fetch so the admin token can be sent),
// the admin API for models and errors, and /v1/chat/completions for the playground.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HEARTBEAT_S = parseFloat(document.body.dataset.heartbeatS) || 5;
  const SAMPLE_S = parseFloat(document.body.dataset.throughputS) || 1;
  const TOKEN_REQUIRED = document.body.dataset.tokenRequired === "true";
  const TOKEN_KEY = "lmx.adminToken";
  const SAMPLES = 300;

  // ---- admin token: asked once, kept in sessionStorage -------------------------------------
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const withAuth = (headers = {}) => (token() ? { ...headers, Authorization: `Bearer ${token()}` } : headers);

  function askToken(reason) {
    const dialog = $("token-dialog");
    if (dialog.open) return;
    if (reason) $("token-reason").textContent = reason;
    $("token-input").value = token();
    dialog.showModal();
  }

  const tokenReason = (message) => (token() ? `The server refused this token. ${message}` : message);

  function showTokenState() {
    $("token-button").textContent = token() ? "Admin token ✓" : "Admin token";
  }

  $("token-button").addEventListener("click", () => askToken());
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-dialog").close();
    showTokenState();
    restart();
  });
  $("token-form").addEventListener("submit", () => {
    const value = $("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    restart();
  });

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = "GET", body } = {}) {
    const headers = withAuth(body === undefined ? {} : { "Content-Type": "application/json" });
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "unreachable", `LMX did not answer (${err.message}).`);
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      const e = (data && data.error) || { code: `http-${res.status}`, message: res.statusText };
      if (res.status === 401) askToken(tokenReason(e.message));
      throw new ApiError(res.status, e.code, e.message);
    }
    return data;
  }

  // ---- formatting -----------------------------------------------------------------------------
  const fmtBytes = (n) => {
    if (!n && n !== 0) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    return `${n.toFixed(n < 10 && i ? 2 : n < 100 && i ? 1 : 0)} ${units[i]}`;
  };
  const fmtUptime = (s) => {
    s = Math.floor(s);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  };
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  // ---- memory gauge ---------------------------------------------------------------------------
  const ARC = 2 * Math.PI * 52;
  const thresholds = { warning: null, critical: null };

  function showMemory(ev) {
    if (typeof ev.warning_pct === "number") thresholds.warning = ev.warning_pct;
    if (typeof ev.critical_pct === "number") thresholds.critical = ev.critical_pct;
    const pct = Math.max(0, Math.min(100, ev.pct));
    const arc = $("gauge-arc");
    arc.style.strokeDasharray = `${ARC}`;
    arc.style.strokeDashoffset = `${ARC * (1 - pct / 100)}`;
    let level = "ok";
    if (thresholds.critical !== null && pct >= thresholds.critical) level = "critical";
    else if (thresholds.warning !== null && pct >= thresholds.warning) level = "warning";
    const gauge = $("gauge");
    gauge.dataset.level = level;
    gauge.setAttribute("aria-label", `memory ${pct.toFixed(1)} percent, ${level}`);
    $("gauge-pct").textContent = `${ev.pct.toFixed(1)}%`;
    $("gauge-used").textContent = `${ev.vram_used_gb.toFixed(2)} / ${ev.vram_total_gb.toFixed(1)} GB`;
    if (thresholds.warning !== null) {
      $("gauge-thresholds").textContent =
        `warning ${thresholds.warning}% · critical ${thresholds.critical}%`;
    }
    const cache = ev.prompt_cache;
    if (cache) {
      $("prompt-cache").textContent =
        `prompt cache: ${(cache.hit_rate * 100).toFixed(1)}% of prompt tokens cached · ` +
        `disk ${cache.disk_gb.toFixed(2)} GB (${cache.disk_blocks} blocks)`;
    }
  }

  function showMemoryAlert(ev) {
    const box = $("memory-alert");
    box.hidden = false;
    box.classList.toggle("critical", ev.type === "memory_critical");
    box.textContent = `${new Date().toLocaleTimeString()} — ${ev.message}`;
  }

  // ---- throughput graph: a circular buffer of 300 samples ------------------------------------
  const ring = new Float32Array(SAMPLES);
  let head = 0;
  let filled = 0;
  let lastRate = 0;
  let lastRateAt = 0;
  let activeRequests = 0;
  let activeByModel = {}; // model id -> requests running or queued, from the throughput events

  function pushSample(value) {
    ring[head] = value;
    head = (head + 1) % SAMPLES;
    filled = Math.min(filled + 1, SAMPLES);
  }

  function drawGraph() {
    const canvas = $("throughput-graph");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    let peak = 0;
    for (let i = 0; i < filled; i += 1) peak = Math.max(peak, ring[(head - filled + i + SAMPLES) % SAMPLES]);
    const top = Math.max(1, niceCeil(peak));
    const pad = { l: 34, r: 6, t: 8, b: 14 };
    const gw = w - pad.l - pad.r;
    const gh = h - pad.t - pad.b;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#8b93a3";
    ctx.strokeStyle = "#2a303b";
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = pad.t + gh * (1 - f);
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(w - pad.r, y);
      ctx.stroke();
      ctx.fillText(`${Math.round(top * f)}`, 2, y + 4);
    }
    ctx.fillText(`−${Math.round((SAMPLES * SAMPLE_S) / 60)} min`, pad.l, h - 2);
    ctx.fillText("now", w - pad.r - 20, h - 2);
    if (filled > 1) {
      const x = (i) => pad.l + (gw * (SAMPLES - filled + i)) / (SAMPLES - 1);
      const y = (v) => pad.t + gh * (1 - v / top);
      ctx.beginPath();
      for (let i = 0; i < filled; i += 1) {
        const v = ring[(head - filled + i + SAMPLES) % SAMPLES];
        if (i === 0) ctx.moveTo(x(i), y(v));
        else ctx.lineTo(x(i), y(v));
      }
      ctx.strokeStyle = "#5b9dff";
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.lineTo(x(filled - 1), pad.t + gh);
      ctx.lineTo(x(0), pad.t + gh);
      ctx.closePath();
      ctx.fillStyle = "rgba(91, 157, 255, 0.15)";
      ctx.fill();
    }
    $("throughput-peak").textContent = peak.toFixed(1);
  }

  function niceCeil(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function sampleTick() {
    // The server sends throughput only while it generates: no recent sample means idle.
    const fresh = performance.now() - lastRateAt <= 1500 * SAMPLE_S;
    const value = fresh ? lastRate : 0;
    if (!fresh) {
      activeRequests = 0;
      activeByModel = {};
    }
    pushSample(value);
    $("throughput-now").textContent = value.toFixed(1);
    $("throughput-active").textContent = `${activeRequests}`;
    if (!fresh) $("throughput-queued").textContent = "0";
    drawGraph();
    renderModelStates();
  }

  function showThroughput(ev) {
    lastRate = ev.tokens_per_second;
    lastRateAt = performance.now();
    activeRequests = ev.active_requests;
    activeByModel = ev.active_by_model || {};
    $("throughput-queued").textContent = `${ev.queued_requests ?? 0}`;
  }

  // ---- models ---------------------------------------------------------------------------------
  let models = [];
  let loadedId = null; // the most recently used resident model
  let totalGb = 0; // device memory, for each model's share
  let fetchedAt = 0; // when `models` came: TTL countdowns run from it
  const pending = new Map(); // model id -> {action, since}
  const downloads = new Map(); // hub id -> {bytes_done, bytes_total}: `downloading` model events

  function stateOf(m) {
    if (pending.get(m.id)?.action === "load" || m.state === "loading") return "loading";
    if (m.loaded) return (activeByModel[m.id] || 0) > 0 ? "inferring" : "loaded";
    return "idle";
  }

  function stateCell(m) {
    const state = stateOf(m);
    const job = pending.get(m.id);
    const label =
      state === "loading" && job ? `loading ${((performance.now() - job.since) / 1000).toFixed(0)}s` : state;
    return el(
      "span",
      { class: "state", dataset: { state } },
      state === "loading" ? el("span", { class: "spinner" }) : null,
      state === "loading" ? " " : null,
      label,
    );
  }

  function renderModels() {
    const tbody = $("models-table").querySelector("tbody");
    tbody.replaceChildren();
    if (!models.length && !downloads.size) {
      tbody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No models on disk.")));
    }
    for (const [id, d] of downloads) {
      const pct = d.bytes_total ? Math.min(100, (d.bytes_done / d.bytes_total) * 100) : 0;
      tbody.append(
        el(
          "tr",
          { dataset: { download: id } },
          el("td", { class: "model-id" }, id, el("div", { class: "muted small-text" }, "hf-cache")),
          el("td", {}, "mlx"),
          el("td", {}, fmtBytes(d.bytes_total)),
          el("td", {}, "–"),
          el(
            "td",
            { class: "state-cell" },
            el(
              "span",
              { class: "state", dataset: { state: "downloading" } },
              el("progress", { max: "100", value: pct.toFixed(1) }),
              ` downloading ${pct.toFixed(0)}% (${fmtBytes(d.bytes_done)})`,
            ),
          ),
          el("td", {}),
        ),
      );
    }
    for (const m of models) {
      const busy = pending.size > 0;
      const button = m.loaded
        ? el("button", { type: "button", class: "ghost", onclick: () => unloadModel(m.id), ...(busy ? { disabled: "" } : {}) }, "Unload")
        : el("button", { type: "button", onclick: () => loadModel(m.id), ...(busy ? { disabled: "" } : {}) }, "Load");
      const detail = m.loaded && m.vram_gb !== null ? ` · ${memoryShare(m)} (${m.backend})` : "";
      tbody.append(
        el(
          "tr",
          { dataset: { model: m.id } },
          el(
            "td",
            { class: "model-id", title: m.path },
            m.id,
            m.pinned ? el("span", { class: "pin", title: "pinned: never evicted nor expired" }, " 📌") : null,
            el("div", { class: "muted small-text" }, `${m.source}${detail}`),
            m.loaded ? el("div", { class: "muted small-text ttl" }, ttlText(m)) : null,
          ),
          el("td", {}, m.format),
          el("td", {}, fmtBytes(m.size_bytes)),
          el("td", {}, m.quantization || "–"),
          el("td", { class: "state-cell" }, stateCell(m)),
          el("td", {}, button),
        ),
      );
    }
    const resident = models.filter((m) => m.loaded);
    const recent = resident.find((m) => m.most_recent) || resident[0];
    loadedId = recent ? recent.id : null;
    $("loaded-model").textContent = resident.length
      ? resident.map((m) => `${m.id} · ${m.vram_gb !== null ? m.vram_gb.toFixed(2) : "?"} GB`).join(" | ")
      : "no model loaded";
  }

  function memoryShare(m) {
    const share = totalGb ? ` (${((m.vram_gb / totalGb) * 100).toFixed(1)}% of memory)` : "";
    return `${m.vram_gb.toFixed(2)} GB${share}`;
  }

  function ttlText(m) {
    const running = activeByModel[m.id] || 0;
    const active = running ? `${running} running · ` : "";
    if (m.ttl_left_s === null || m.ttl_left_s === undefined) {
      return `${active}${m.pinned ? "pinned" : m.ttl_s === null ? "stays loaded" : "TTL paused while busy"}`;
    }
    const left = Math.max(0, m.ttl_left_s - (performance.now() - fetchedAt) / 1000);
    return `${active}unloads in ${left.toFixed(0)}s if idle`;
  }

  function renderModelStates() {
    for (const row of $("models-table").querySelectorAll("tr[data-model]")) {
      const m = models.find((x) => x.id === row.dataset.model);
      if (!m) continue;
      row.querySelector(".state-cell").replaceChildren(stateCell(m));
      const ttl = row.querySelector(".ttl");
      if (ttl) ttl.textContent = ttlText(m);
    }
  }

  function showModelsError(err) {
    const box = $("models-error");
    if (!err) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.hidden = false;
    box.replaceChildren(el("code", {}, err.code || "error"), ` ${err.message}`);
  }

  // A distributed group: ranks, hosts, backend, sharding and each rank's memory (or why it broke).
  function showGroup(group) {
    const line = $("models-group");
    line.hidden = !group;
    if (!group) return;
    const memory = group.memory_gb_by_rank.map((gb, rank) => `rank ${rank} ${gb.toFixed(2)} GB`).join(" · ");
    line.textContent =
      `group: ${group.ranks} ranks (${group.backend}) on ${[...new Set(group.hosts)].join(", ")} · ` +
      `sharding ${group.sharding} · ${memory}` + (group.lost ? ` · LOST: ${group.lost}` : "");
    line.classList.toggle("alert", Boolean(group.lost));
  }

  async function refreshModels() {
    try {
      const data = await api("/admin/models");
      models = data.models;
      fetchedAt = performance.now();
      if (data.memory) totalGb = data.memory.total_gb;
      renderModels();
      showGroup(data.group);
      if (data.memory) {
        const { active_gb: used, total_gb: total, pct } = data.memory;  // pct: memory counted whole
        showMemory({ vram_used_gb: used, vram_total_gb: total, pct });
      }
    } catch (err) {
      showModelsError(err);
    }
  }

  async function runModelJob(id, action, call) {
    pending.set(id, { action, since: performance.now() });
    showModelsError(null);
    renderModels();
    try {
      await call();
    } catch (err) {
      showModelsError(err);
    } finally {
      pending.delete(id);
      await refreshModels();
    }
  }

  const loadModel = (id) => runModelJob(id, "load", () => api("/admin/models/load", { method: "POST", body: { model: id } }));
  const unloadModel = (id) =>
    runModelJob(id, "unload", () => api("/admin/models/unload", { method: "POST", body: { model: id } }));
  $("models-refresh").addEventListener("click", refreshModels);

  // ---- recent errors --------------------------------------------------------------------------
  const ERRORS_SHOWN = 10;
  let errors = [];

  function renderErrors() {
    const list = $("errors-list");
    list.replaceChildren();
    if (!errors.length) list.append(el("li", { class: "muted" }, "No errors recorded."));
    for (const e of errors) {
      list.append(
        el(
          "li",
          { dataset: { code: e.code } },
          el("time", { datetime: e.time, class: "muted" }, new Date(e.time).toLocaleString()),
          el("span", { class: "sev", dataset: { severity: e.severity } }, e.severity),
          el("a", { href: e.admin_url, target: "_blank", rel: "noopener" }, el("code", {}, e.code)),
          el("span", { class: "message" }, e.message),
        ),
      );
    }
  }

  async function refreshErrors() {
    try {
      errors = (await api(`/admin/errors?limit=${ERRORS_SHOWN}`)).errors;
      renderErrors();
    } catch (err) {
      $("errors-list").replaceChildren(el("li", { class: "muted" }, `Could not read errors: ${err.message}`));
    }
  }

  function addError(ev) {
    errors = [ev, ...errors.filter((e) => e.id !== ev.id)].slice(0, ERRORS_SHOWN);
    renderErrors();
  }

  // ---- the event stream and the health badge --------------------------------------------------
  const health = {
    controller: null,
    retry: 0,
    timer: null,
    countdown: null,
    lastBeat: 0,
    connected: false,
    wasConnected: false,
  };

  function setHealth(state, detail) {
    const badge = $("health");
    badge.dataset.state = state;
    badge.textContent = detail ? `${state} · ${detail}` : state;
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "heartbeat":
        health.lastBeat = performance.now();
        setHealth("connected", `up ${fmtUptime(ev.uptime)}`);
        break;
      case "memory":
        showMemory(ev);
        break;
      case "memory_warning":
        showMemory(ev);
        showMemoryAlert(ev);
        break;
      case "memory_critical":
        showMemory(ev);
        showMemoryAlert(ev);
        refreshModels();
        break;
      case "throughput":
        showThroughput(ev);
        break;
      case "model_event":
        if (ev.action === "downloading") {
          if (ev.bytes_done < ev.bytes_total) {
            downloads.set(ev.model, ev);
            renderModels();
            break;
          }
          downloads.delete(ev.model); // whole: the model is on disk, listed by the refresh
        }
        refreshModels();
        break;
      case "error":
        addError(ev);
        break;
      default:
        break;
    }
  }

  async function connectEvents() {
    clearTimeout(health.timer);
    clearInterval(health.countdown);
    if (health.controller) health.controller.abort();
    const controller = new AbortController();
    health.controller = controller;
    health.connected = false;
    setHealth("connecting");
    try {
      const res = await fetch("/admin/events", {
        headers: withAuth({ Accept: "text/event-stream" }),
        cache: "no-store",
        signal: controller.signal,
      });
      if (res.status === 401) {
        let message = "The event stream needs the admin token.";
        try {
          message = (await res.json()).error.message;
        } catch {
          // keep the generic reason
        }
        askToken(tokenReason(message));
        setHealth("disconnected", "admin token needed");
        controller.abort();
        return; // no retry loop: the next try comes when a token is saved
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      health.connected = true;
      health.retry = 0;
      if (health.wasConnected) {
        // back after an outage: what changed meanwhile is not in the stream
        refreshModels();
        refreshErrors();
      }
      health.wasConnected = true;
      health.lastBeat = performance.now();
      await readSse(res.body, (data) => onEvent(JSON.parse(data)));
      throw new Error("the server closed the stream");
    } catch (err) {
      if (controller !== health.controller) return; // replaced by a newer connection
      health.connected = false;
      scheduleReconnect(err.message);
    }
  }

  // Reads a text/event-stream body and calls onData with each event's data (its "data:" lines
  // joined); stops when the body ends or onData returns false. What onData throws, this throws.
  async function readSse(body, onData) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut = buffer.indexOf("\n\n");
      while (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        cut = buffer.indexOf("\n\n");
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (data && onData(data) === false) return;
      }
    }
  }

  function scheduleReconnect(why) {
    // Back-off: 1, 2, 4, ... 30 s between attempts.
    const delay = Math.min(30, 2 ** health.retry);
    health.retry += 1;
    const at = performance.now() + delay * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((at - performance.now()) / 1000));
      setHealth("disconnected", `retry in ${left}s`);
    };
    tick();
    $("health").title = why;
    health.countdown = setInterval(tick, 500);
    health.timer = setTimeout(() => {
      clearInterval(health.countdown);
      connectEvents();
    }, delay * 1000);
  }

  function watchHeartbeats() {
    if (!health.connected) return;
    const silent = (performance.now() - health.lastBeat) / 1000;
    if (silent > 2.5 * HEARTBEAT_S) setHealth("stale", `no heartbeat for ${Math.floor(silent)}s`);
    // A connection silent for this long is likely half-open: drop it and dial again.
    if (silent > Math.max(6 * HEARTBEAT_S, 20)) {
      health.connected = false;
      const old = health.controller;
      health.controller = null;
      old.abort();
      scheduleReconnect("heartbeats stopped");
    }
  }

  // ---- playground -----------------------------------------------------------------------------
  let history = [];
  let chatController = null;

  function addMessage(role, text) {
    const node = el("div", { class: `msg ${role}` }, text);
    $("chat-log").append(node);
    $("chat-log").scrollTop = $("chat-log").scrollHeight;
    return node;
  }

  function setChatBusy(busy) {
    $("chat-send").disabled = busy;
    $("chat-stop").disabled = !busy;
  }

  async function sendChat(text) {
    const model = loadedId || (models[0] && models[0].id) || "default";
    history.push({ role: "user", content: text });
    addMessage("user", text);
    const out = addMessage("assistant", "");
    const controller = new AbortController();
    chatController = controller;
    setChatBusy(true);
    const started = performance.now();
    let first = null;
    let pieces = 0;
    let usage = null;
    let answer = "";
    const showStats = () => {
      const now = performance.now();
      $("chat-ttft").textContent = first === null ? "–" : `${Math.round(first - started)}`;
      const tokens = usage ? usage.completion_tokens : pieces;
      $("chat-tokens").textContent = `${tokens}`;
      if (first !== null && now - first > 0 && tokens > 1) {
        $("chat-tps").textContent = ((tokens - 1) / ((now - first) / 1000)).toFixed(1);
      }
    };
    $("chat-ttft").textContent = "…";
    $("chat-tps").textContent = "–";
    $("chat-tokens").textContent = "0";
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST",
        // with LMX_API_KEYS set, /v1 takes the admin token as well as a key
        headers: withAuth({ "Content-Type": "application/json" }),
        signal: controller.signal,
        body: JSON.stringify({
          model,
          messages: history,
          stream: true,
          stream_options: { include_usage: true },
          max_tokens: parseInt($("chat-max").value, 10) || 128,
          temperature: parseFloat($("chat-temp").value),
        }),
      });
      if (!res.ok) {
        let e = { code: `http-${res.status}`, message: res.statusText };
        try {
          e = (await res.json()).error || e;
        } catch {
          // not JSON: keep the status line
        }
        if (res.status === 401) askToken(tokenReason(e.message));
        throw new ApiError(res.status, e.code, e.message);
      }
      await readSse(res.body, (data) => {
        if (data.trim() === "[DONE]") return false;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error.code, chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (piece) {
          if (first === null) first = performance.now();
          pieces += 1;
          answer += piece;
          out.textContent = answer;
          $("chat-log").scrollTop = $("chat-log").scrollHeight;
        }
        showStats();
        return true;
      });
      showStats();
      history.push({ role: "assistant", content: answer });
    } catch (err) {
      history.pop(); // the question was not answered: do not send it again with the next one
      if (err.name === "AbortError") {
        out.textContent = `${answer} [stopped]`;
      } else {
        out.classList.add("error");
        out.textContent = `${err.code ? `${err.code}: ` : ""}${err.message}`;
      }
    } finally {
      chatController = null;
      setChatBusy(false);
    }
  }

  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text || chatController) return;
    $("chat-input").value = "";
    sendChat(text);
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-stop").addEventListener("click", () => chatController && chatController.abort());
  $("chat-clear").addEventListener("click", () => {
    history = [];
    $("chat-log").replaceChildren();
  });

  // ---- start ----------------------------------------------------------------------------------
  function restart() {
    refreshModels();
    refreshErrors();
    health.retry = 0;
    connectEvents();
  }

  showTokenState();
  drawGraph();
  setInterval(sampleTick, SAMPLE_S * 1000);
  setInterval(watchHeartbeats, 250);
  setInterval(() => (pending.size || models.some((m) => m.ttl_left_s != null)) && renderModelStates(), 500);
  window.addEventListener("resize", drawGraph);
  if (TOKEN_REQUIRED && !token()) {
    setHealth("disconnected", "admin token needed");
    askToken();
  } else {
    restart();
  }
})();
