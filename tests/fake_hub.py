"""A local stand-in for the Hugging Face hub, so the real huggingface_hub code path runs without a
network. It answers model_info for the repos it is given and 404s the rest; for repos given with
files it also lists their tree and serves the files as the hub's resolve URLs do."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0" * 40
CHUNK = 256 * 1024


class FakeHub:
    def __init__(
        self,
        repos: dict[str, list[dict]],
        *,
        files: dict[str, dict[str, Path]] | None = None,
        bytes_per_s: float | None = None,
    ):
        self.files = files or {}
        self.bytes_per_s = bytes_per_s  # a slow link, so a download's progress can be watched
        self.repos = dict(repos)
        for repo, named in self.files.items():
            self.repos[repo] = [
                {"rfilename": name, "size": path.stat().st_size} for name, path in named.items()
            ]
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, *, body: bool):
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                for repo, siblings in hub.repos.items():
                    if path.startswith(f"/api/models/{repo}/tree/"):
                        return self._json([_tree_entry(s) for s in siblings])
                    if path.startswith(f"/api/models/{repo}"):
                        return self._json(
                            {
                                "id": repo,
                                "modelId": repo,
                                "sha": COMMIT,
                                "siblings": siblings,
                                "private": False,
                            }
                        )
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix) and repo in hub.files:
                        name = path[len(prefix) :].split("/", 1)[-1]
                        if name in hub.files[repo]:
                            return self._file(hub.files[repo][name], name, body=body)
                self._send(404, b'{"error": "Repository not found"}', {"x-error-code": "RepoNotFound"})

            def _json(self, payload) -> None:
                self._send(200, json.dumps(payload).encode(), {"content-type": "application/json"})

            def _file(self, path: Path, name: str, *, body: bool) -> None:
                size = path.stat().st_size
                self.send_response(200)
                self.send_header("content-length", str(size))
                self.send_header("etag", f'"{_oid(name, size)}"')
                self.send_header("x-repo-commit", COMMIT)
                self.end_headers()
                if body:
                    with path.open("rb") as f:
                        if hub.bytes_per_s is None:
                            shutil.copyfileobj(f, self.wfile)
                        while hub.bytes_per_s and (chunk := f.read(CHUNK)):
                            self.wfile.write(chunk)
                            time.sleep(len(chunk) / hub.bytes_per_s)

            def _send(self, status: int, body: bytes, headers: dict) -> None:
                self.send_response(status)
                for key, value in {**headers, "content-length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _oid(name: str, size: int) -> str:
    return hashlib.sha1(f"{name}:{size}".encode()).hexdigest()


def _tree_entry(sibling: dict) -> dict:
    name, size = sibling["rfilename"], sibling.get("size") or 0
    return {"type": "file", "path": name, "size": size, "oid": _oid(name, size)}
