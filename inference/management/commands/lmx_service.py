"""Run LMX as a login service: `install`, `uninstall`, `status`, `logs`.

macOS: a launchd agent in ~/Library/LaunchAgents; Linux: a systemd user unit in
~/.config/systemd/user. `--home` installs under another home (tests, packaging) and
`--write-only` writes the file without registering it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import conf
from inference.service_files import LABEL, NAME, Service, logs_of


class Command(BaseCommand):
    help = "Install, remove, inspect or follow LMX as a launchd agent (macOS) or systemd user unit (Linux)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["install", "uninstall", "status", "logs"])
        parser.add_argument(
            "--platform",
            choices=["launchd", "systemd"],
            default="launchd" if sys.platform == "darwin" else "systemd",
        )
        parser.add_argument("--home", type=Path, default=Path.home(), help="default: your home")
        parser.add_argument("--log-dir", type=Path, default=Path("/tmp"), help="install: where logs go")
        parser.add_argument("--env-file", type=Path, default=None, help="install: default the project's .env")
        parser.add_argument("--write-only", action="store_true", help="install: write, do not register")
        parser.add_argument("--lines", type=int, default=50, help="logs: lines shown first")
        parser.add_argument("--no-follow", action="store_true", help="logs: print and exit")

    def handle(self, *args, action, **opts):
        service = Service(
            kind=opts["platform"],
            home=opts["home"].expanduser(),
            python=Path(sys.executable),
            project=Path(settings.BASE_DIR),
            env_file=(opts["env_file"] or settings.ENV_FILE).expanduser().absolute(),
            log_dir=opts["log_dir"].expanduser().absolute(),
        )
        if action == "install":
            self._install(service, write_only=opts["write_only"])
        elif action == "uninstall":
            self._uninstall(service)
        elif action == "status":
            self._status(service)
        else:
            self._logs(service, lines=opts["lines"], follow=not opts["no_follow"])

    # ---- install / uninstall ---------------------------------------------------------------
    def _install(self, service: Service, *, write_only: bool) -> None:
        service.path.parent.mkdir(parents=True, exist_ok=True)
        service.path.write_bytes(service.render())
        self.stdout.write(f"Wrote {service.path}")
        self.stdout.write(f"  runs:     {' '.join(service.command)}")
        self.stdout.write(f"  settings: {service.env_file} (and the environment)")
        self.stdout.write(f"  logs:     {service.stdout_log}, {service.stderr_log}")
        steps = _register_steps(service)
        if write_only:
            self.stdout.write("Not registered (--write-only). To start it now and at every login:")
            for step in steps:
                self.stdout.write(f"  {' '.join(step)}")
            return
        for step in _replace_steps(service):  # an earlier install of it: stopped first
            _run(step)
        for step in steps:
            failed = _run(step)
            if failed:
                raise CommandError(
                    f"{service.path} is written, but `{' '.join(step)}` failed: {failed}. "
                    f"Run it yourself once the service manager is reachable, or remove the file with "
                    f"`manage.py lmx_service uninstall`."
                )
        self.stdout.write(f"Registered and started: {LABEL if service.kind == 'launchd' else NAME}")

    def _uninstall(self, service: Service) -> None:
        if not service.path.exists():
            self.stdout.write(f"Not installed: {service.path} does not exist.")
            return
        for step in _unregister_steps(service):
            failed = _run(step)
            if failed:
                self.stderr.write(f"`{' '.join(step)}`: {failed} (the file is removed anyway)")
        service.path.unlink()
        _remove_empty_parents(service.path.parent, stop=service.home)
        if service.kind == "systemd":
            _run(["systemctl", "--user", "daemon-reload"])
        self.stdout.write(f"Removed {service.path}")

    # ---- status ---------------------------------------------------------------------------
    def _status(self, service: Service) -> None:
        if not service.path.exists():
            self.stdout.write(f"Not installed ({service.path} does not exist).")
        else:
            self.stdout.write(f"Installed: {service.path}")
            self.stdout.write(f"  manager:  {_manager_state(service)}")
        host = conf.get("LMX_HOST")
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{conf.get('LMX_PORT')}"
        ready = _probe(url)
        self.stdout.write(f"  server:   {ready}")
        logs = logs_of(service.path) or (service.stdout_log, service.stderr_log)
        self.stdout.write(f"  logs:     {logs[0]}, {logs[1]}")
        if not ready.startswith("ready"):
            raise SystemExit(1)

    # ---- logs -----------------------------------------------------------------------------
    def _logs(self, service: Service, *, lines: int, follow: bool) -> None:
        files = logs_of(service.path) or (service.stdout_log, service.stderr_log)
        if not any(f.exists() for f in files):
            raise CommandError(f"No log files yet: {files[0]}, {files[1]}. Is the service installed?")
        positions = {}
        for f in files:
            for line in _last_lines(f, lines):
                self.stdout.write(f"{_tag(f)} {line}")
            positions[f] = f.stat().st_size if f.exists() else 0
        self.stdout.flush()
        while follow:
            time.sleep(0.25)
            for f in files:
                positions[f] = self._copy_new(f, positions[f])

    def _copy_new(self, path: Path, position: int) -> int:
        try:
            size = path.stat().st_size
        except OSError:
            return 0
        if size < position:  # truncated or rotated: start again
            position = 0
        if size == position:
            return position
        with path.open("rb") as f:
            f.seek(position)
            data = f.read()
        if b"\n" not in data:
            return position  # half a line: wait for the rest
        complete = data[: data.rindex(b"\n") + 1]
        for line in complete.decode(errors="replace").splitlines():
            self.stdout.write(f"{_tag(path)} {line}")
        self.stdout.flush()
        return position + len(complete)


def _tag(path: Path) -> str:
    return "[err]" if path.name.endswith("stderr.log") else "[out]"


def _last_lines(path: Path, n: int) -> list[str]:
    if not path.exists() or n <= 0:
        return []
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 256 * 1024))
        return f.read().decode(errors="replace").splitlines()[-n:]


def _register_steps(service: Service) -> list[list[str]]:
    if service.kind == "launchd":
        domain = f"gui/{os.getuid()}"
        return [
            ["launchctl", "enable", f"{domain}/{LABEL}"],  # a label once disabled would not bootstrap
            ["launchctl", "bootstrap", domain, str(service.path)],
        ]
    return [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", f"{NAME}.service"],
        ["systemctl", "--user", "restart", f"{NAME}.service"],  # started, or restarted on the new unit
    ]


def _replace_steps(service: Service) -> list[list[str]]:
    """Installing over a loaded agent: launchd refuses a second bootstrap of the same label."""
    if service.kind == "launchd":
        return [["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"]]
    return []


def _unregister_steps(service: Service) -> list[list[str]]:
    if service.kind == "launchd":
        return [["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"]]
    return [["systemctl", "--user", "disable", "--now", f"{NAME}.service"]]


def _run(command: list[str]) -> str:
    """'' when it worked, else what went wrong in one line."""
    if shutil.which(command[0]) is None:
        return f"{command[0]} is not on this machine"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return ""
    return " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"


def _manager_state(service: Service) -> str:
    if service.kind == "launchd":
        command = ["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"]
    else:
        command = [
            "systemctl",
            "--user",
            "show",
            f"{NAME}.service",
            "-p",
            "ActiveState,SubState,MainPID,NRestarts",
        ]
    if shutil.which(command[0]) is None:
        return f"unknown ({command[0]} is not on this machine)"
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"not loaded ({' '.join((done.stderr or done.stdout).split())[:200]})"
    fields = dict(
        line.strip().split(" = " if service.kind == "launchd" else "=", 1)
        for line in done.stdout.splitlines()
        if (" = " if service.kind == "launchd" else "=") in line
    )
    if service.kind == "launchd":
        return f"loaded, state {fields.get('state', '?')}, pid {fields.get('pid', '-')}, last exit {fields.get('last exit code', '-')}"
    return (
        f"{fields.get('ActiveState', '?')} ({fields.get('SubState', '?')}), pid {fields.get('MainPID', '-')}, "
        f"restarts {fields.get('NRestarts', '0')}"
    )


def _probe(url: str) -> str:
    try:
        answer = httpx.get(url + "/readyz", timeout=5)
    except httpx.HTTPError as exc:
        return f"not answering at {url} ({type(exc).__name__})"
    try:
        body = answer.json()
    except ValueError:
        return f"{url}/readyz answered {answer.status_code} without JSON"
    if answer.status_code == 200 and body.get("ready"):
        return f"ready at {url} (models: {', '.join(body.get('models') or [body.get('model')])})"
    return f"up at {url} but not ready: {body.get('error') or answer.status_code}"


def _remove_empty_parents(folder: Path, *, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
