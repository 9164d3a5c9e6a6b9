"""A distributed group of LMX processes (server side: no MLX here).

Each process learns its rank from MLX_RANK and its peers from MLX_HOSTFILE, as `mlx.launch`
sets them on each machine of a hostfile (`mlx.launch --hostfile hosts.json -- manage.py
lmx_serve`). `lmx_serve --ranks N` starts a group on this machine itself: a ring over loopback,
rank 0 in this process (its engine process inherits the variables) and N-1 followers beside it,
each a `manage.py lmx_serve` of its own. Rank 0 serves HTTP; the others only follow its engine.
`mlx.launch` stops every rank when one exits with an error; this launcher does not, so rank 0
stays up to say the group is lost (/readyz).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from django.conf import settings

from inference import conf

log = logging.getLogger("lmx")


def rank() -> int | None:
    """This process's rank in a group, or None when it serves alone."""
    value = os.environ.get("MLX_RANK")
    return int(value) if value not in (None, "") else None


def group_settings() -> dict | None:
    """What the engine process of a rank needs to join its group (None outside a group)."""
    if rank() is None:
        return None
    return {
        "backend": conf.get("LMX_DISTRIBUTED_BACKEND"),
        "sharding": conf.get("LMX_SHARDING"),
        "timeout_s": conf.get("LMX_DISTRIBUTED_TIMEOUT_S"),
    }


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalRanks:
    """Ranks 1..N-1 on this machine, for rank 0 in this process."""

    def __init__(self, size: int):
        self.size = size
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.gpus = visible.split(",") if visible else [str(i) for i in range(size)]
        self.followers: list[subprocess.Popen] = []
        self._stopping = False

    def start(self) -> LocalRanks:
        os.environ.update({**self._backend_env(), "MLX_RANK": "0", **self._device(0)})
        manage = Path(settings.BASE_DIR) / "manage.py"
        for follower in range(1, self.size):
            env = {**os.environ, "MLX_RANK": str(follower), "LMX_RANK_PARENT": str(os.getpid())}
            env.update(self._device(follower))
            process = subprocess.Popen([sys.executable, str(manage), "lmx_serve"], env=env)
            self.followers.append(process)
            threading.Thread(
                target=self._watch, args=(follower, process), name=f"lmx-rank-{follower}", daemon=True
            ).start()
        log.info(
            "Distributed group of %d ranks on this machine (%s backend, over loopback)",
            self.size,
            conf.get("LMX_DISTRIBUTED_BACKEND"),
        )
        return self

    def _backend_env(self) -> dict:
        """What mlx.launch would set for the backend: a ring's hostfile of loopback ports, or
        NCCL's rendezvous (one GPU a rank)."""
        if conf.get("LMX_DISTRIBUTED_BACKEND") == "nccl":
            (port,) = _free_ports(1)
            return {"NCCL_HOST_IP": "127.0.0.1", "NCCL_PORT": str(port), "MLX_WORLD_SIZE": str(self.size)}
        folder = Path(settings.DATA_DIR) / "distributed"
        folder.mkdir(parents=True, exist_ok=True)
        hostfile = folder / f"ring-{os.getpid()}.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"] for port in _free_ports(self.size)]))
        return {"MLX_HOSTFILE": str(hostfile)}

    def _device(self, rank: int) -> dict:
        """NCCL: each rank its own GPU, in the order CUDA_VISIBLE_DEVICES lists them (else 0..N-1)."""
        if conf.get("LMX_DISTRIBUTED_BACKEND") != "nccl":
            return {}
        return {"CUDA_VISIBLE_DEVICES": self.gpus[rank % len(self.gpus)]}

    def _watch(self, follower: int, process: subprocess.Popen) -> None:
        code = process.wait()
        if self._stopping:
            return
        log.error("Rank %d (pid %d) exited with code %s", follower, process.pid, code)
        from inference import runtime

        engine = runtime.running()
        if engine is not None and hasattr(engine, "rank_lost"):
            engine.rank_lost(f"rank {follower} exited with code {code}")

    def stop(self, timeout: float = 30.0) -> None:
        """After rank 0's engine stopped the group: wait for the followers to end, in rank order."""
        self._stopping = True
        for follower, process in enumerate(self.followers, start=1):
            try:
                log.info("Rank %d stopped (exit code %s)", follower, process.wait(timeout))
            except subprocess.TimeoutExpired:
                log.warning("Rank %d did not stop within %.0f s; killing it", follower, timeout)
                process.kill()
                process.wait(5)
