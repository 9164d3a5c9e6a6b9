"""The HTTP side of the CLI: which URL, which credential for which route, and the server's own
error message when a request fails."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

DEFAULT_URL = "http://127.0.0.1:1234"


class CliError(Exception):
    """A failure to show the user as one line; `code` is the server's error code, if any."""

    def __init__(self, message: str, *, code: str = "", status: int = 0, exit_code: int = 1):
        super().__init__(message)
        self.code, self.status, self.exit_code = code, status, exit_code


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str = ""
    admin_token: str = ""
    timeout_s: float = 600.0

    @classmethod
    def from_env(cls, url: str | None, token: str | None) -> Server:
        return cls(
            url=(url or os.environ.get("LMX_URL") or DEFAULT_URL).rstrip("/"),
            api_key=token or os.environ.get("LMX_API_KEY", ""),
            admin_token=token or os.environ.get("LMX_ADMIN_TOKEN", ""),
        )

    def _headers(self, path: str) -> dict:
        # /admin needs the admin token; /v1 takes a key or the admin token
        secret = self.admin_token if path.startswith(("/admin", "/metrics")) else self.api_key
        secret = secret or self.admin_token or self.api_key
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    def _client(self, timeout: float | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout or self.timeout_s)

    def get(self, path: str, *, params: dict | None = None, ok: tuple[int, ...] = (200,)) -> dict:
        return self._json(self._send("GET", path, params=params), ok)

    def post(self, path: str, body: dict | None = None) -> dict:
        return self._json(self._send("POST", path, body=body), (200,))

    def text(self, path: str) -> str:
        response = self._send("GET", path)
        if response.status_code != 200:
            raise _failure(response)
        return response.text

    def _send(self, method: str, path: str, *, params=None, body=None) -> httpx.Response:
        try:
            with self._client() as http:
                return http.request(method, path, params=params, json=body, headers=self._headers(path))
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach LMX at {self.url}: {exc}", exit_code=3) from exc

    def _json(self, response: httpx.Response, ok: tuple[int, ...]) -> dict:
        if response.status_code not in ok:
            raise _failure(response)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"{self.url} answered {response.status_code} without JSON") from exc

    def stream(self, method: str, path: str, body: dict | None = None) -> Iterator[str]:
        """The `data:` payloads of a Server-Sent Events response, as they come."""
        try:
            with (
                self._client() as http,
                http.stream(method, path, json=body, headers=self._headers(path)) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise _failure(response)
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        yield line[5:].strip()
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach LMX at {self.url}: {exc}", exit_code=3) from exc


def _failure(response: httpx.Response) -> CliError:
    """The server's own message: LMX's {"error": {...}} (and Anthropic's shape) or the status."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if isinstance(error, dict) and error.get("message"):
        code = error.get("code") or error.get("type") or ""
        return CliError(str(error["message"]), code=str(code), status=response.status_code)
    text = response.text.strip()[:200] or response.reason_phrase
    return CliError(f"HTTP {response.status_code}: {text}", status=response.status_code)


def event_payloads(lines: Iterator[str]) -> Iterator[dict]:
    for data in lines:
        try:
            yield json.loads(data)
        except ValueError:
            continue
