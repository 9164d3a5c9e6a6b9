"""A local stand-in for the Hugging Face hub API, so the real huggingface_hub code path runs
without a network. It answers model_info for the repos it is given and 404s the rest."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, repos: dict[str, list[dict]]):
        self.repos = repos
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hub.requests.append(self.path)
                path = self.path.split("?")[0]
                for repo, siblings in hub.repos.items():
                    if path.startswith(f"/api/models/{repo}"):
                        body = json.dumps(
                            {
                                "id": repo,
                                "modelId": repo,
                                "sha": "0" * 40,
                                "siblings": siblings,
                                "private": False,
                            }
                        ).encode()
                        self.send_response(200)
                        self.send_header("content-type", "application/json")
                        self.send_header("content-length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                body = b'{"error": "Repository not found"}'
                self.send_response(404)
                self.send_header("x-error-code", "RepoNotFound")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
