"""A fake Hugging Face Hub on 127.0.0.1, so the real download code (`datasets`, `huggingface_hub`) is
tested without the network. It serves dataset and model repos from memory: info, revision, tree and
resolve endpoints with the headers the clients require (X-Repo-Commit, ETag, Content-Length,
Accept-Ranges, X-Error-Code), HTTP range requests, gated repos (401 without the token) and 404s.

Point the clients at it with HF_ENDPOINT=<url> set BEFORE huggingface_hub is imported (it reads the
variable at import), e.g. in the environment of the worker process under test.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    repo_id: str
    kind: str  # "dataset" or "model"
    files: dict[str, bytes]
    token: str | None = None  # gated: requests need "Authorization: Bearer <token>"
    sha: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.repo_id.encode())
        for name in sorted(self.files):
            digest.update(name.encode() + self.files[name])
        self.sha = self.sha or digest.hexdigest()


@dataclass
class FakeHub:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    # Set to make the hub drop connections (simulates the hub going away mid-download).
    broken: threading.Event = field(default_factory=threading.Event)
    # Set to drop only file downloads: the repo answers, then the hub is lost mid-download.
    files_broken: threading.Event = field(default_factory=threading.Event)
    # Seconds to wait before serving each file (a slow link, so a test can watch a download run).
    file_delay_s: float = 0.0
    # Set to a byte count to cut the next full file download after that many bytes (once).
    cut_next_file_at: int | None = None
    server: ThreadingHTTPServer | None = None

    def add(self, repo: Repo) -> Repo:
        self.repos[(repo.kind, repo.repo_id)] = repo
        return repo

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def env(self) -> dict[str, str]:
        """The environment that points an appliance at this hub."""
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_TELEMETRY": "1"}

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


_API = re.compile(r"^/api/(datasets|models)/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet test output
        pass

    # -- helpers ------------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(value).encode(), headers)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), {"X-Error-Code": code, "X-Error-Message": message})

    def _repo(self, kind: str, repo_id: str) -> Repo | None:
        repo = self.fake.repos.get((kind, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}")
            return None
        if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(401, "GatedRepo", f"Access to {repo_id} is restricted: you must be authenticated")
            return None
        return repo

    def _info(self, repo: Repo) -> dict[str, object]:
        return {
            "id": repo.repo_id,
            "sha": repo.sha,
            "private": False,
            "gated": bool(repo.token),
            "disabled": False,
            "tags": [],
            "cardData": {},
            "lastModified": "2026-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.files.items())],
        }

    def _tree(self, repo: Repo, path: str, recursive: bool) -> list[dict[str, object]]:
        prefix = path.strip("/")
        entries: dict[str, dict[str, object]] = {}
        for name, data in sorted(repo.files.items()):
            if prefix and not name.startswith(prefix + "/"):
                continue
            rest = name[len(prefix) + 1 :] if prefix else name
            if recursive or "/" not in rest:
                entries[name] = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                if recursive:
                    parts = name.split("/")[:-1]
                    for i in range(len(prefix.split("/")) if prefix else 0, len(parts)):
                        folder = "/".join(parts[: i + 1])
                        entries.setdefault(
                            folder,
                            {
                                "type": "directory",
                                "path": folder,
                                "size": 0,
                                "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            },
                        )
            else:
                folder = (prefix + "/" if prefix else "") + rest.split("/")[0]
                entries.setdefault(
                    folder,
                    {"type": "directory", "path": folder, "size": 0, "oid": hashlib.sha1(folder.encode()).hexdigest()},
                )
        return list(entries.values())

    # -- verbs --------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        ranged = f" range={self.headers['Range']}" if self.headers.get("Range") else ""
        self.fake.requests.append(f"{self.command} {path}{ranged}")
        if self.fake.broken.is_set():
            self.close_connection = True
            self.connection.close()
            return
        api = _API.match(path)
        if api:
            kind = "dataset" if api.group(1) == "datasets" else "model"
            repo = self._repo(kind, api.group(2))
            if repo is None:
                return
            action, rest = api.group(3), api.group(5) or ""
            if action == "tree":
                self._json(self._tree(repo, rest, "recursive=true" in (url.query or "").lower()))
            elif action == "paths-info":
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                wanted = re.findall(r"paths=([^&]+)", body) or []
                entries = [e for e in self._tree(repo, "", True) if e["path"] in {unquote(w) for w in wanted}]
                self._json(entries)
            else:
                self._json(self._info(repo), {"X-Repo-Commit": repo.sha})
            return
        resolve = _RESOLVE.match(path)
        if resolve and self.fake.files_broken.is_set():
            self.close_connection = True
            self.connection.close()
            return
        if resolve:
            kind = "dataset" if resolve.group(1) else "model"
            repo = self._repo(kind, resolve.group(2))
            if repo is None:
                return
            name = resolve.group(4)
            if name not in repo.files:
                self._error(404, "EntryNotFound", f"{name} does not exist in {repo.repo_id}")
                return
            data = repo.files[name]
            if self.fake.file_delay_s and self.command == "GET":
                time.sleep(self.fake.file_delay_s)
            headers = {
                "X-Repo-Commit": repo.sha,
                "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                "Accept-Ranges": "bytes",
            }
            match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if match:
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(data) - 1
                chunk = data[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"
                self._send(206, chunk, headers, "application/octet-stream")
            elif self.fake.cut_next_file_at is not None and self.command == "GET":
                cut, self.fake.cut_next_file_at = self.fake.cut_next_file_at, None
                self.send_response(200)
                for key, value in {
                    **headers,
                    "Content-Length": str(len(data)),
                    "Content-Type": "application/octet-stream",
                }.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
            else:
                self._send(200, data, headers, "application/octet-stream")
            return
        self._error(404, "EntryNotFound", f"no such endpoint {path}")
