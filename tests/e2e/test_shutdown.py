"""Stopping a real server while it generates: what clients in flight and operators see."""

import json
import os
import signal
import threading

import httpx
import pytest

from tests.conftest import MLX_ID, wait_for

SHUTTING_DOWN = {"code": "no-model-loaded", "message": "LMX is shutting down. Retry once it is back."}
LONG = {
    "model": MLX_ID,
    "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
    "max_tokens": 400,
    "ignore_eos": True,  # runs well past the moment the server is stopped
}


def _stop(srv, how: str) -> int:
    if how == "ctrl-c":  # a terminal sends SIGINT to the whole foreground group
        os.killpg(srv.proc.pid, signal.SIGINT)
    elif how == "service-manager":  # systemd's default: SIGTERM to every process of the unit
        os.killpg(srv.proc.pid, signal.SIGTERM)
    else:  # `kill PID`, `docker stop`: the server process only
        srv.proc.send_signal(signal.SIGTERM)
    return srv.proc.wait(60)


@pytest.mark.parametrize("how", ["ctrl-c", "service-manager", "kill"])
def test_stop_ends_requests_in_flight_with_a_recorded_error_and_exits_cleanly(make_server, server_db, how):
    from monitoring.models import ErrorEvent

    srv = make_server(default_model=MLX_ID, wait_ready=True, own_group=True)
    plain, lines, messages = {}, [], []

    def complete():
        reply = httpx.post(srv.url + "/v1/chat/completions", json=LONG, timeout=120)
        plain.update(status=reply.status_code, body=reply.json())

    def stream():
        with httpx.stream(
            "POST", srv.url + "/v1/chat/completions", json={**LONG, "stream": True}, timeout=120
        ) as reply:
            lines.extend(line for line in reply.iter_lines() if line)

    def socket():
        from websockets.sync.client import connect

        with connect(srv.url.replace("http", "ws") + "/v1/chat/stream", open_timeout=30) as ws:
            ws.send(json.dumps(LONG))
            while "done" not in (message := json.loads(ws.recv(timeout=120))):
                messages.append(message)
            messages.append(message)

    threads = [threading.Thread(target=run) for run in (complete, stream, socket)]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum('"content": "' in line for line in lines) >= 3 and len(messages) >= 3, timeout=120)

    assert _stop(srv, how) == 0
    for thread in threads:
        thread.join(30)

    # The stream ends with a coded error chunk and [DONE], not a cut connection.
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2].removeprefix("data: "))["error"] == SHUTTING_DOWN
    # The non-streamed request in the same batch gets the same error as a 503, the WebSocket
    # its error message.
    assert plain == {"status": 503, "body": {"error": SHUTTING_DOWN}}
    assert "token" in messages[-2] and messages[-1] == {"error": SHUTTING_DOWN, "done": True}
    # Operators: a log line, the three errors in the history, and a clean exit of both
    # processes (the engine process used to abort at most stops: "terminate called without an
    # active exception" on stderr).
    assert "Shutting down: ended 3 requests in flight" in srv.stdout()
    assert srv.stderr() == ""  # no warning (the engine process stopped in order), no abort
    rows = ErrorEvent.objects.using(server_db(srv)).filter(code="no-model-loaded")
    assert sorted(rows.values_list("endpoint", "message")) == [
        ("POST /v1/chat/completions", SHUTTING_DOWN["message"]),
        ("POST /v1/chat/completions", SHUTTING_DOWN["message"]),
        ("WS /v1/chat/stream", SHUTTING_DOWN["message"]),
    ]
