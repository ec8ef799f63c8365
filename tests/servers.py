"""Small real HTTP servers on 127.0.0.1 for source tests: plain files with ETags, and a Hub-like API."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Behaviour:
    """What the server does: files it serves, and failures to inject."""

    files: dict[str, bytes] = field(default_factory=dict)
    status: int | None = None  # answer every request with this status
    delay_s: float = 0.0  # sleep before answering (timeouts)
    hub_sha: str | None = None  # answer /api/datasets/<repo>/revision/<rev> with this commit sha
    root: Path | None = None  # also serve files from this folder
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (a 302)
    requests: int = 0
    not_modified: int = 0
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, body: bool) -> None:
        b = self.behaviour
        b.requests += 1
        if b.delay_s:
            time.sleep(b.delay_s)
        if b.status:
            self.send_response(b.status)
            self.end_headers()
            return
        path = self.path.split("?")[0]
        b.seen.append((self.command, path, dict(self.headers.items())))
        if path in b.redirects:
            self.send_response(302)
            self.send_header("Location", b.redirects[path])
            self.end_headers()
            return
        if b.hub_sha is not None and path.startswith("/api/datasets/") and "/revision/" in path:
            data = json.dumps(
                {"id": path.split("/api/datasets/")[1].split("/revision/")[0], "sha": b.hub_sha}
            ).encode()
            etag = None
        else:
            data = self._file(path)
            if data is None:
                self.send_response(404)
                self.end_headers()
                return
            etag = '"' + hashlib.md5(data).hexdigest() + '"'
            if self.headers.get("If-None-Match") == etag:
                b.not_modified += 1
                self.send_response(304)
                self.end_headers()
                return
        self.send_response(200)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _file(self, path: str) -> bytes | None:
        b = self.behaviour
        key = path.lstrip("/")
        if key in b.files:
            return b.files[key]
        if b.root is not None:
            # Hub layout: /datasets/<repo>/resolve/<revision>/<file> → <root>/<file>
            rel = key.split("/resolve/", 1)[1].split("/", 1)[1] if "/resolve/" in key else key
            f = b.root / rel
            if f.is_file():
                return f.read_bytes()
        return None

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)


@contextmanager
def http_server(behaviour: Behaviour) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
