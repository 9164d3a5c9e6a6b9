"""`manage.py lmx_service` (#27 item 1): the launchd agent and the systemd user unit it writes,
install and uninstall leaving nothing behind, `status` probing a real server, `logs` following
the files, and the command the service runs serving with the service's own environment."""

from __future__ import annotations

import os
import plistlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.servers import free_port, wait_ok
from tests.conftest import MLX_ID
from tests.lmx_server import ROOT

DRAIN_S = 5  # inference.shutdown.drain's timeout


def service(home: Path, *args: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "manage.py", "lmx_service", *args, "--home", str(home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


def test_the_launchd_agent_names_the_seeds_logs_the_venv_and_the_project(tmp_path):
    done = service(tmp_path, "install", "--platform", "launchd", "--write-only")
    assert done.returncode == 0, done.stderr
    plist = tmp_path / "Library" / "LaunchAgents" / "com.opta.lmx.plist"
    agent = plistlib.loads(plist.read_bytes())
    assert agent["Label"] == "com.opta.lmx"
    assert agent["ProgramArguments"] == [sys.executable, str(ROOT / "manage.py"), "lmx_serve"]
    assert Path(agent["ProgramArguments"][0]).parent.parent == Path(sys.prefix)  # the virtualenv's
    assert agent["WorkingDirectory"] == str(ROOT)
    assert agent["EnvironmentVariables"]["LMX_ENV_FILE"] == str(ROOT / ".env")
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # restarted after a crash only
    assert agent["StandardOutPath"] == "/tmp/opta-lmx.stdout.log"
    assert agent["StandardErrorPath"] == "/tmp/opta-lmx.stderr.log"
    assert agent["ExitTimeOut"] > DRAIN_S
    assert f"launchctl bootstrap gui/{os.getuid()} {plist}" in done.stdout


def test_the_systemd_unit_restarts_on_failure_and_outlasts_the_drain(tmp_path):
    done = service(tmp_path, "install", "--platform", "systemd", "--write-only")
    assert done.returncode == 0, done.stderr
    unit = tmp_path / ".config" / "systemd" / "user" / "opta-lmx.service"
    lines = unit.read_text().splitlines()
    assert "Restart=on-failure" in lines and "KillMode=mixed" in lines
    assert f"ExecStart={sys.executable} {ROOT / 'manage.py'} lmx_serve" in lines
    assert f"WorkingDirectory={ROOT}" in lines and f"Environment=LMX_ENV_FILE={ROOT / '.env'}" in lines
    assert "StandardOutput=append:/tmp/opta-lmx.stdout.log" in lines
    stop = int(next(line for line in lines if line.startswith("TimeoutStopSec=")).split("=")[1])
    assert stop > DRAIN_S
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not on this machine: the unit was checked by its lines only")
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0 and verified.stderr.strip() == ""  # not even a warning
    broken = tmp_path / "broken.service"  # the tool does object to a bad setting
    broken.write_text(unit.read_text().replace("KillMode=mixed", "KillMode=sometimes"))
    objected = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert "Failed to parse kill mode" in objected.stderr


@pytest.mark.parametrize("platform", ["launchd", "systemd"])
def test_install_then_uninstall_leaves_nothing_behind(tmp_path, platform):
    home = tmp_path / "home"
    home.mkdir()
    assert service(home, "install", "--platform", platform, "--write-only").returncode == 0
    assert len([p for p in files_under(home) if p.is_file()]) == 1
    removed = service(home, "uninstall", "--platform", platform)
    assert removed.returncode == 0, removed.stderr
    assert "Removed" in removed.stdout
    assert files_under(home) == []
    again = service(home, "uninstall", "--platform", platform)
    assert again.returncode == 0 and "Not installed" in again.stdout


def test_an_install_the_service_manager_refuses_says_so(tmp_path):
    """Here (no user session bus, or launchctl missing) registering fails: the command says which
    step failed and why, and exits non-zero."""
    platform = "systemd" if sys.platform != "darwin" else "launchd"
    reachable = (
        subprocess.run(["systemctl", "--user", "is-system-running"], capture_output=True, text=True)
        if shutil.which("systemctl")
        else None
    )
    if platform == "launchd" or (reachable is not None and reachable.returncode == 0):
        pytest.skip("a real service manager is reachable: the test would register a service")
    done = service(tmp_path, "install", "--platform", platform)
    assert done.returncode == 1
    assert "is written, but `systemctl --user daemon-reload` failed" in done.stderr
    assert service(tmp_path, "uninstall", "--platform", platform).returncode == 0
    assert files_under(tmp_path) == []


def test_the_services_command_serves_with_its_env_file_then_status_and_logs(tmp_path, model_store):
    """Run what the unit runs, as the manager would (its environment only, its working directory,
    output into the log files), with the .env it names: status finds it ready, logs show it."""
    home, logs = tmp_path / "home", tmp_path / "logs"
    port = free_port()
    env_file = tmp_path / "lmx.env"
    env_file.write_text(
        f"LMX_PORT={port}\nLMX_DATA_DIR={tmp_path / 'data'}\nDATABASE_URL=sqlite:///{tmp_path / 'lmx.db'}\n"
        f"LMX_MODELS_DIR={model_store}\nLMX_DEFAULT_MODEL={MLX_ID}\nLMX_ADMIN_TOKEN=\nLMX_API_KEYS=\n"
    )
    installed = service(
        home,
        "install",
        "--platform",
        "launchd",
        "--write-only",
        "--log-dir",
        str(logs),
        "--env-file",
        str(env_file),
    )
    assert installed.returncode == 0, installed.stderr
    agent = plistlib.loads((home / "Library" / "LaunchAgents" / "com.opta.lmx.plist").read_bytes())
    managed_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **agent["EnvironmentVariables"]}
    logs.mkdir()
    subprocess.run(
        [agent["ProgramArguments"][0], "manage.py", "migrate", "-v0"],  # as `make setup` does
        cwd=agent["WorkingDirectory"],
        env=managed_env,
        check=True,
    )
    with (
        open(agent["StandardOutPath"], "a") as out,
        open(agent["StandardErrorPath"], "a") as err,
    ):
        proc = subprocess.Popen(
            agent["ProgramArguments"], cwd=agent["WorkingDirectory"], env=managed_env, stdout=out, stderr=err
        )
    follower = None
    try:
        wait_ok(f"http://127.0.0.1:{port}/readyz", timeout=120, alive=lambda: proc.poll() is None)
        status = service(home, "status", "--platform", "launchd", env={"LMX_ENV_FILE": str(env_file)})
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"ready at http://127.0.0.1:{port} (models: {MLX_ID})" in status.stdout
        assert f"logs:     {logs / 'opta-lmx.stdout.log'}" in status.stdout

        shown = service(home, "logs", "--platform", "launchd", "--no-follow", "--lines", "20")
        assert shown.returncode == 0
        assert f"[out] INFO:     LMX starting on 127.0.0.1:{port}" in shown.stdout
        follower = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "lmx_service",
                "logs",
                "--home",
                str(home),
                "--platform",
                "launchd",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
        time.sleep(2)
        httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"model": MLX_ID, "prompt": "Once upon a time", "max_tokens": 3},
            timeout=60,
        ).raise_for_status()
        seen = []
        while not any("Completion request" in line for line in seen):
            seen.append(lines.get(timeout=30))  # the request's log line, followed live
        assert seen[-1].startswith(f"[out] INFO:     Completion request model={MLX_ID} tokens=")
    finally:
        if follower is not None:
            follower.terminate()
            follower.wait(10)
        proc.send_signal(signal.SIGTERM)  # what launchd and systemd send
        assert proc.wait(30) == 0  # a clean stop: KeepAlive/Restart=on-failure leave it stopped
    stopped = service(home, "status", "--platform", "launchd", env={"LMX_ENV_FILE": str(env_file)})
    assert stopped.returncode == 1 and "not answering" in stopped.stdout
