"""A fault-injecting HTTP reverse proxy in front of the moto S3 server, for storage-failure tests.

Every request is forwarded as received (method, path, query, headers including ``Host`` and
``Authorization``, body) to the upstream server, except that a seeded share of them fails with one of:

``500``       HTTP 500 with an S3 XML ``InternalError`` body (the request never reaches upstream)
``503``       HTTP 503 with an S3 XML ``SlowDown`` body (the request never reaches upstream)
``reset``     forwarded; then the status line, headers and half the body are sent and the socket is
              closed with ``SO_LINGER 0``, so the client gets a TCP RST mid-response
``truncate``  forwarded; then the full ``Content-Length`` but only half the body, and a clean close (FIN)
``refuse``    the connection is reset as soon as the request has been read, before any response
``stall``     no answer at all until the proxy stops or its ``timeout`` passes (a client read timeout)
``403``       HTTP 403 ``AccessDenied``; ``400``: HTTP 400 ``InvalidArgument`` (permanent errors)

Which request fails is decided by ``random.Random`` seeded with ``(seed, method, target, n)`` where ``n``
counts earlier requests with the same method and target: a run's faults are reproducible whatever the
order in which concurrent requests arrive, and a retried request gets a fresh draw.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

FAULT_KINDS = ("500", "503", "reset", "truncate", "refuse", "stall", "403", "400")
#: The kinds the fault tests expect to see injected (``refuse`` and ``stall`` are for outages, ``403`` and
#: ``400`` are the permanent errors that must not be retried).
DEFAULT_KINDS = ("500", "503", "reset", "truncate")

# Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; ``Expect`` is answered by this proxy (and is not
# part of a SigV4 signature), the body is forwarded with its real length.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}

_ERRORS = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
    "403": ("AccessDenied", "Access Denied"),
    "400": ("InvalidArgument", "Invalid Argument"),
}
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>faulty-proxy-{n}</RequestId></Error>"
)


@dataclass
class ProxyStats:
    """What the proxy saw and did; read it after the code under test has finished."""

    requests: int = 0
    forwarded: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    #: (method, target, kind) of every fault, in the order injected.
    log: list[tuple[str, str, str]] = field(default_factory=list)
    #: the Authorization header of every request ("" when it had none), in arrival order.
    authorizations: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return f"{self.requests} requests, {self.failed} faults ({kinds}), {self.forwarded} forwarded"


class FaultyProxy:
    """A reverse proxy on 127.0.0.1 that injects faults; ``start()``/``stop()`` or use it as a context."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        kinds: Sequence[str] = DEFAULT_KINDS,
        seed: int = 0,
        timeout: float = 10.0,
    ) -> None:
        host, _, port = upstream.removeprefix("http://").rstrip("/").partition(":")
        self.upstream = (host, int(port or 80))
        self.timeout = timeout
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.configure(rate=rate, kinds=kinds, seed=seed)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    def configure(
        self, *, rate: float | None = None, kinds: Sequence[str] | None = None, seed: int | None = None
    ) -> None:
        """Change the failure rate, the fault kinds or the seed (takes effect with the next request)."""
        with self._lock:
            if rate is not None:
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"rate must be in [0, 1], got {rate}")
                self.rate = rate
            if kinds is not None:
                unknown = set(kinds) - set(FAULT_KINDS)
                if unknown or not kinds:
                    raise ValueError(f"fault kinds must be some of {FAULT_KINDS}, got {list(kinds)}")
                self.kinds = tuple(kinds)
            if seed is not None:
                self.seed = seed

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultyProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="faulty-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # stalled requests end now
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:  # idle keep-alive connections: end them now, not at their timeout
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- used by the handler ---------------------------------------------------------------------

    def decide(self, method: str, target: str) -> str | None:
        """The fault to inject into this request, or None to forward it untouched."""
        with self._lock:
            self.stats.requests += 1
            n = self._seen[(method, target)]
            self._seen[(method, target)] += 1
            rng = random.Random(f"{self.seed}\0{method}\0{target}\0{n}")
            if rng.random() >= self.rate:
                return None
            return rng.choice(self.kinds)

    def record(self, method: str, target: str, kind: str | None) -> None:
        with self._lock:
            if kind is None:
                self.stats.forwarded += 1
            else:
                self.stats.faults[kind] += 1
                self.stats.log.append((method, target, kind))

    def track(self, sock: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._sockets.add if alive else self._sockets.discard)(sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks stop(); every socket has a timeout anyway
    allow_reuse_address = True
    proxy: FaultyProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real S3 endpoint
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.proxy.timeout  # StreamRequestHandler applies it to the socket
        super().setup()
        self.server.proxy.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: pytest shows stderr of failing tests, this would drown it

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _proxy(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()  # always read it all, so a fault never desynchronises the connection
        with proxy._lock:
            proxy.stats.authorizations.append(self.headers.get("Authorization", ""))
        kind = proxy.decide(self.command, self.path)
        if kind in ("refuse", "stall"):
            proxy.record(self.command, self.path, kind)
            if kind == "stall":
                proxy._stopping.wait(proxy.timeout)
            self._reset()
            return
        if kind in _ERRORS:
            proxy.record(self.command, self.path, kind)
            self._error(int(kind))
            return
        status, reason, headers, data = self._forward(body)
        if kind is not None and (not data or self.command == "HEAD"):
            # Nothing to cut short (HEAD, an empty PUT answer): break the connection after the status
            # line, before the headers are complete, so that the client cannot take it for an answer.
            proxy.record(self.command, self.path, "reset")
            self.send_response_only(status, reason)
            self._reset()
            return
        proxy.record(self.command, self.path, kind)
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if kind is None:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        if kind == "reset":
            self._reset()
        else:
            self.close_connection = True  # FIN after half the promised bytes

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        proxy = self.server.proxy
        conn = http.client.HTTPConnection(*proxy.upstream, timeout=proxy.timeout)
        try:
            # Host goes through as received: the client signed its SigV4 request for the proxy's address.
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            if self.command in ("GET", "HEAD") and not body:
                headers.pop("Content-Length")
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            if self.command != "HEAD":  # a HEAD answer keeps the object's Content-Length
                out = [(k, v) for k, v in out if k.lower() != "content-length"]
                out.append(("Content-Length", str(len(data))))
            return resp.status, resp.reason, out, data
        finally:
            conn.close()

    def _error(self, status: int) -> None:
        code, message = _ERRORS[str(status)]
        data = _ERROR_XML.format(code=code, message=message, n=self.server.proxy.stats.requests).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER 0 makes close() send RST instead of FIN."""
        sock = self.connection
        self.flush_headers()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The makefile() objects hold references to the socket: close them so close() really closes.
        self.wfile.flush()
        self.rfile.close()
        self.wfile.close()
        sock.close()
        # The base class flushes and closes these after the handler returns: give it harmless stand-ins.
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()
        self.close_connection = True


@dataclass
class FaultyS3:
    """The ``faulty_s3`` fixture: the proxy, its endpoint, and the environment a user would set."""

    proxy: FaultyProxy
    env: dict[str, str]

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def configure(
        self, *, rate: float | None = None, kinds: Sequence[str] | None = None, seed: int | None = None
    ) -> None:
        self.proxy.configure(rate=rate, kinds=kinds, seed=seed)


@pytest.fixture
def faulty_s3(s3_server: str, s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyS3]:
    """A fault-injecting proxy in front of a freshly reset moto server holding the bucket ``datasets``.

    It starts with a failure rate of 0; a test calls ``faulty_s3.proxy.configure(rate=..., seed=...)``.
    ``AWS_ENDPOINT_URL`` (in this process and in ``faulty_s3.env``) points at the proxy.
    """
    import s3fs

    with FaultyProxy(s3_server) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        s3fs.S3FileSystem.clear_instance_cache()  # no cached filesystem keeps talking to moto directly
        yield FaultyS3(proxy, {**s3, "AWS_ENDPOINT_URL": proxy.endpoint})
    s3fs.S3FileSystem.clear_instance_cache()
