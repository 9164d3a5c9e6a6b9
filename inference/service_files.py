"""What `manage.py lmx_service` writes: a launchd agent (macOS) or a systemd user unit (Linux)
that runs `manage.py lmx_serve` from this checkout with its virtualenv's Python, restarts it
after a crash (not after a clean stop), and sends stdout and stderr to the log files the seed
names (`tail -f /tmp/opta-lmx.stdout.log`)."""

from __future__ import annotations

import plistlib
import re
from dataclasses import dataclass
from pathlib import Path

NAME = "opta-lmx"  # the seed's log files: /tmp/opta-lmx.stdout.log, /tmp/opta-lmx.stderr.log
LABEL = "com.opta.lmx"  # launchd's reverse-DNS label
# SIGTERM to SIGKILL: LMX drains requests for up to 5 s, then stops the engine; room to spare
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Service:
    kind: str  # "launchd" | "systemd"
    home: Path
    python: Path  # the virtualenv's interpreter
    project: Path  # the checkout: manage.py's folder and the working directory
    env_file: Path
    log_dir: Path = Path("/tmp")

    @property
    def path(self) -> Path:
        if self.kind == "launchd":
            return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        return self.home / ".config" / "systemd" / "user" / f"{NAME}.service"

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / f"{NAME}.stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.log_dir / f"{NAME}.stderr.log"

    @property
    def command(self) -> list[str]:
        return [str(self.python), str(self.project / "manage.py"), "lmx_serve"]

    def render(self) -> bytes:
        return self._plist() if self.kind == "launchd" else self._unit().encode()

    def _plist(self) -> bytes:
        return plistlib.dumps(
            {
                "Label": LABEL,
                "ProgramArguments": self.command,
                "WorkingDirectory": str(self.project),
                "EnvironmentVariables": {"LMX_ENV_FILE": str(self.env_file), "PYTHONUNBUFFERED": "1"},
                "RunAtLoad": True,
                "KeepAlive": {"SuccessfulExit": False},  # after a crash, not after a clean stop
                "ThrottleInterval": 10,
                "ExitTimeOut": STOP_TIMEOUT_S,
                "StandardOutPath": str(self.stdout_log),
                "StandardErrorPath": str(self.stderr_log),
            }
        )

    def _unit(self) -> str:
        def quoted(arg: str) -> str:
            return f'"{arg}"' if re.search(r"\s", arg) else arg

        return f"""[Unit]
Description=LMX local LLM inference server ({self.project})
After=network-online.target

[Service]
Type=simple
WorkingDirectory={self.project}
Environment=LMX_ENV_FILE={self.env_file}
Environment=PYTHONUNBUFFERED=1
ExecStart={" ".join(quoted(a) for a in self.command)}
Restart=on-failure
RestartSec=5
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT_S}
StandardOutput=append:{self.stdout_log}
StandardError=append:{self.stderr_log}

[Install]
WantedBy=default.target
"""


def logs_of(path: Path) -> tuple[Path, Path] | None:
    """The stdout and stderr files an installed service writes, read back from its file."""
    try:
        if path.suffix == ".plist":
            data = plistlib.loads(path.read_bytes())
            return Path(data["StandardOutPath"]), Path(data["StandardErrorPath"])
        text = path.read_text()
    except (OSError, ValueError, KeyError, plistlib.InvalidFileException):
        return None
    found = dict(re.findall(r"^Standard(Output|Error)=append:(.+)$", text, re.M))
    if {"Output", "Error"} <= set(found):
        return Path(found["Output"]), Path(found["Error"])
    return None
