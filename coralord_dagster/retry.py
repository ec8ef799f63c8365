"""The one retry policy for storage calls: which errors a retry can fix, and how long to keep trying.

:func:`is_transient` sorts errors: a 500/502/503/504, an S3 ``SlowDown``/``InternalError``/
``ServiceUnavailable``/``RequestTimeout``, throttling, a reset, refused or aborted connection, a timeout or
a response cut short can go away on its own; a missing object (404), a refusal (403), any other 4xx or
one of coralord's own errors cannot. :func:`storage_retry` retries a call while its errors are transient,
with exponential backoff and jitter, for at most ``CORALORD_STORAGE_RETRIES`` attempts (default 6), then
re-raises the last error; :func:`unavailable` turns that error into the
:class:`~coralord_dagster.errors.StorageUnavailableError` (exit code 3) a user sees::

    try:
        data = storage_retry(fs.cat_file)(path)
    except Exception as e:
        if is_transient(e):
            raise unavailable(f"read part {sha} from {url}", e) from e
        raise

(:func:`storage_call` does exactly that.) Retry below the code that wraps errors into coralord's own: a
:class:`~coralord_dagster.errors.CoralordError` is never retried, whatever its cause.

What s3fs raises (2026.9, aiobotocore 3.10, seen against a fault-injecting proxy; ``→`` is ``__cause__``
or ``__context__``):

* HTTP 500: ``OSError(EREMOTEIO)`` → ``botocore ClientError`` (code ``InternalError``, or ``500`` for a
  HEAD, which has no body); HTTP 503: ``OSError(EBUSY)`` → ``ClientError`` (``SlowDown``/``503``).
* A connection reset before or during the headers: ``botocore EndpointConnectionError`` (not an
  ``OSError``!) → ``aiohttp ClientOSError(ECONNRESET)`` → ``ConnectionResetError``; refused:
  ``EndpointConnectionError`` → ``ClientConnectorError(ECONNREFUSED)`` → ``ConnectionRefusedError``.
* A body cut short (reset or early close after a full ``Content-Length``): of a listing,
  ``botocore ConnectionClosedError`` → ``aiohttp ClientPayloadError``; of an object read by
  ``cat_file``/``open().read()``, a bare ``aiohttp ClientPayloadError`` (not an ``OSError`` either).
* Through DuckDB (a filesystem registered with ``register_filesystem``), any of these becomes a plain
  ``duckdb.Error`` whose message is the Python traceback's text; it is recognised by its last line.

s3fs and botocore retry too, and the layers multiply: by default botocore makes 5 attempts (legacy mode,
up to ~15 s of backoff) inside each of s3fs's 5 (a ``SlowDown`` PUT took 25 requests and 40 s through the
proxy). :data:`S3_STORAGE_OPTIONS` and :func:`limit_backend_retries` cut the inner layers to one quick
HTTP-level retry so that this policy is the one that waits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import ssl
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

import tenacity

from coralord_dagster.errors import ConfigError, CoralordError, StorageUnavailableError
from coralord_dagster.redact import redact_url

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: Attempts in all (the first one included) unless ``CORALORD_STORAGE_RETRIES`` says otherwise.
DEFAULT_ATTEMPTS = 6
#: Backoff: 0.1 s, doubling, at most 2 s, plus up to 0.1 s of jitter (so that parallel part writers that
#: failed together do not retry together). Six attempts wait about 3 s in all.
WAIT_INITIAL_S = 0.1
WAIT_MAX_S = 2.0
WAIT_JITTER_S = 0.1

#: Storage options for s3fs that leave the waiting to this module: botocore's standard mode (with its
#: retry quota) makes 2 attempts instead of legacy mode's 5, and a dead endpoint is given up on in
#: seconds, not botocore's default 60 s per connect and per read. Pass them under the caller's own.
S3_STORAGE_OPTIONS: dict[str, Any] = {
    "config_kwargs": {
        "retries": {"mode": "standard", "total_max_attempts": 2},
        "connect_timeout": 5,
        "read_timeout": 20,
    }
}
#: s3fs's own retry loop (``S3FileSystem.retries``, 5 by default): one attempt. It is a class
#: attribute, not a constructor option (``retries=`` in storage options fails with a TypeError).
S3FS_RETRIES = 1

#: HTTP statuses that a retry can fix: timeout, too many requests, server errors and overload.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: S3 (and other AWS) error codes that a retry can fix.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "OperationAborted",  # "a conflicting conditional operation is in progress; try again"
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
    }
)
#: errno values of network failures.
NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "ENOTCONN",
        "EAGAIN",
    )
    if hasattr(errno, name)
)
# s3fs's translate_boto_error maps InternalError/500 to EREMOTEIO and SlowDown/ServiceUnavailable to EBUSY
# (but also 409 and OperationAborted): with such an errno the verdict comes from the cause or the message.
_AMBIGUOUS_ERRNOS = frozenset({errno.EIO, getattr(errno, "EREMOTEIO", errno.EIO), errno.EBUSY})

# Exceptions of optional backends, by the module that defines them. A backend that was never imported
# cannot have raised anything, so they are looked up in sys.modules, never imported here.
_TRANSIENT_NAMES: dict[str, tuple[str, ...]] = {
    "botocore.exceptions": (
        "ConnectionError",  # botocore's: EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError
        "HTTPClientError",  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
        "IncompleteReadError",
    ),
    "botocore.parsers": ("ResponseParserError",),  # throttling proxies answer with HTML (s3fs#484)
    "aiohttp.client_exceptions": ("ClientPayloadError", "ClientConnectionError"),
    "aiohttp.http_exceptions": ("BadStatusLine", "ContentLengthError", "TransferEncodingError"),
    "urllib3.exceptions": ("ProtocolError", "TimeoutError", "NewConnectionError", "IncompleteRead"),
    "http.client": ("IncompleteRead", "BadStatusLine"),
    "requests.exceptions": ("ConnectionError", "Timeout", "ChunkedEncodingError"),
}
# Decided by their cause (a certificate error is permanent, an EOF in the handshake is not), although
# botocore's SSLError is one of its ConnectionErrors.
_DEFERRED_NAMES: dict[str, tuple[str, ...]] = {"botocore.exceptions": ("SSLError",)}
# Names of transient exceptions as they appear in the text of a DuckDB error ("ExcName: message").
_TRANSIENT_TEXT_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "HTTPClientError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientConnectorError",
        "ServerTimeoutError",
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "TimeoutError",
        "FSTimeoutError",
        "IncompleteRead",
        "ProtocolError",
        "ResponseParserError",
    }
)
_PERMANENT_TEXT_NAMES = frozenset({"FileNotFoundError", "PermissionError", "NoCredentialsError"})
_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Read|Timeout)): ?(.*)$")
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\]")
# Last resort for messages without a usable chain: the words S3 and botocore use for transient failures.
_TRANSIENT_TEXT = re.compile(
    r"\b(SlowDown|InternalError|ServiceUnavailable|RequestTimeout|Throttl\w*|TooManyRequests)\b"
    r"|reduce your request rate|Service Unavailable|Internal Server Error|\((?:500|502|503|504)\)"
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it was raised from or while handling (bounded, cycle-safe)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        current = cause


def _types(table: dict[str, tuple[str, ...]]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, names in table.items():
        module = sys.modules.get(module_name)
        for name in names:
            cls = getattr(module, name, None) if module is not None else None
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


def _service_verdict(exc: BaseException) -> bool | None:
    """For an error that carries a service response (botocore ``ClientError``, aiohttp
    ``ClientResponseError``, gcsfs ``HttpError``, duckdb ``HTTPException``): its code or status."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and ("Error" in response or "ResponseMetadata" in response):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in TRANSIENT_CODES or (code.isdigit() and int(code) in TRANSIENT_STATUS):
            return True
        return isinstance(status, int) and status in TRANSIENT_STATUS
    module = type(exc).__module__
    for attr in ("status", "code", "status_code"):
        status = getattr(exc, attr, None)
        backend = module.startswith(("aiohttp", "gcsfs", "duckdb", "_duckdb"))
        if backend and isinstance(status, int) and 100 <= status < 600:
            return status in TRANSIENT_STATUS
    return None


def _text_verdict(text: str) -> bool | None:
    """Verdict from an error's text (DuckDB flattens the Python error it got from fsspec into text)."""
    for line in reversed(text.strip().splitlines()):
        match = _EXC_LINE.match(line.strip())
        if not match:
            continue
        name, message = match.groups()
        if name in _PERMANENT_TEXT_NAMES:
            return False
        if name in _TRANSIENT_TEXT_NAMES:
            return True
        number = _ERRNO_TEXT.search(message)
        if number and int(number.group(1)) in NETWORK_ERRNOS:
            return True
        if _TRANSIENT_TEXT.search(message):
            return True
        if number and int(number.group(1)) in _AMBIGUOUS_ERRNOS:
            return True  # s3fs's errno for InternalError/SlowDown/ServiceUnavailable
        return None
    return True if _TRANSIENT_TEXT.search(text) else None


def _verdict(exc: BaseException) -> bool | None:
    """True/False when this one error decides, None to look at its cause."""
    if isinstance(exc, CoralordError):
        return False
    if isinstance(exc, (FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError)):
        return False
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False  # also aiohttp's ClientConnectorCertificateError
    if isinstance(exc, _types(_DEFERRED_NAMES)):
        return None
    service = _service_verdict(exc)
    if service is not None:
        return service
    if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True  # TimeoutError covers socket.timeout, asyncio.TimeoutError and fsspec's FSTimeoutError
    if isinstance(exc, _types(_TRANSIENT_NAMES)):
        return True
    if type(exc).__module__ in ("duckdb", "_duckdb"):
        return _text_verdict(str(exc))
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in NETWORK_ERRNOS:
            return True
        if exc.errno in _AMBIGUOUS_ERRNOS:
            return None if exc.__cause__ or exc.__context__ else bool(_TRANSIENT_TEXT.search(str(exc)))
        return False  # a local disk's ENOSPC, EACCES, EROFS...: retrying changes nothing
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the call that raised ``exc`` may succeed: the first error along its cause chain
    that is known either way decides; unknown errors are not transient.

    >>> is_transient(ConnectionResetError(104, "Connection reset by peer"))
    True
    >>> is_transient(FileNotFoundError("datasets/parts/ab/abc.parquet"))
    False
    >>> is_transient(OSError(16, "Please reduce your request rate."))
    True
    """
    for link in _chain(exc):
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
    return False


def configured_attempts() -> int:
    """``CORALORD_STORAGE_RETRIES``: attempts in all, the first included (default 6; 1 = no retry)."""
    raw = os.environ.get("CORALORD_STORAGE_RETRIES", "").strip()
    if not raw:
        return DEFAULT_ATTEMPTS
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"CORALORD_STORAGE_RETRIES must be a whole number of attempts, e.g. 6; got {raw!r}"
        ) from None
    return max(1, value)


def _note_attempts(state: tenacity.RetryCallState) -> None:
    # Remembered on the error itself, so that unavailable() can say how many attempts were really made.
    exc = state.outcome.exception() if state.outcome is not None else None
    if exc is not None:
        # Exceptions with __slots__ refuse it: the message then names the configured number.
        with contextlib.suppress(AttributeError):
            exc._coralord_attempts = state.attempt_number  # type: ignore[attr-defined]


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    name = getattr(state.fn, "__qualname__", "storage call")
    log.info(
        "%s failed (%s); attempt %d, retrying in %.2f s", name, describe(exc), state.attempt_number, wait
    )


def retrying(attempts: int | None = None) -> tenacity.Retrying:
    """The policy as a tenacity ``Retrying``: ``retrying()(func, *args)``, or as a block::

    for attempt in retrying():
        with attempt:
            fs.pipe_file(path, data)
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts or configured_attempts()),
        wait=tenacity.wait_exponential_jitter(initial=WAIT_INITIAL_S, max=WAIT_MAX_S, jitter=WAIT_JITTER_S),
        retry=tenacity.retry_if_exception(is_transient),
        after=_note_attempts,
        before_sleep=_log_retry,
        reraise=True,  # the caller sees the storage error itself, not a tenacity.RetryError
    )


@overload
def storage_retry(func: F, /) -> F: ...
@overload
def storage_retry(*, attempts: int | None = None) -> Callable[[F], F]: ...
def storage_retry(func: F | None = None, /, *, attempts: int | None = None) -> F | Callable[[F], F]:
    """Retry ``func`` while it fails with transient errors; re-raise the last error when attempts run out.

    ``@storage_retry``, ``@storage_retry(attempts=3)`` or ``storage_retry(fs.cat_file)(path)``. The number
    of attempts is read at each call (``CORALORD_STORAGE_RETRIES``), not at decoration.

    >>> calls = []
    >>> @storage_retry(attempts=3)
    ... def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionResetError(104, "Connection reset by peer")
    ...     return "ok"
    >>> flaky(), len(calls)
    ('ok', 3)
    """

    def decorate(fn: F) -> F:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return retrying(attempts)(fn, *args, **kwargs)

        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        wrapper.__name__ = getattr(fn, "__name__", "storage_call")
        wrapper.__qualname__ = getattr(fn, "__qualname__", wrapper.__name__)
        wrapper.__doc__ = fn.__doc__
        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def storage_call(what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` under :func:`storage_retry`; when transient errors outlast the attempts,
    a :class:`~coralord_dagster.errors.StorageUnavailableError` naming ``what`` (other errors as raised)."""
    try:
        return retrying()(func, *args, **kwargs)
    except Exception as e:
        if is_transient(e):
            raise unavailable(what, e) from e
        raise


_SIGNED_QUERY = re.compile(
    r"(?i)(X-Amz-(?:Credential|Signature|Security-Token)|Signature|AWSAccessKeyId|sig|token)=[^&\s\"']+"
)
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "FSSPEC_S3_SECRET")


def redact(text: str) -> str:
    """``text`` without credentials: URL userinfo (as :func:`~coralord_dagster.redact.redact_url` does
    everywhere), presigned-URL signatures, and the values of the AWS secrets in the environment.

    >>> redact("s3://AKIAXXX:s3cr3t@bucket/key?X-Amz-Signature=0a1b2c failed")
    's3://bucket/key?X-Amz-Signature=*** failed'
    """
    text = redact_url(text)
    text = _SIGNED_QUERY.sub(lambda m: f"{m.group(1)}=***", text)
    for variable in _SECRET_VARIABLES:
        value = os.environ.get(variable, "")
        if len(value) >= 8:  # short values would blank out ordinary words
            text = text.replace(value, "***")
    return text


def describe(exc: BaseException | None) -> str:
    """A one-line, credential-free description of ``exc`` (the innermost S3 error code when there is one)."""
    if exc is None:
        return "no error"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if type(exc).__module__ in ("duckdb", "_duckdb") and lines and lines[0].startswith("Traceback"):
        lines = lines[-1:]  # DuckDB hands over the Python traceback's text: keep its last line
    text = lines[0] if lines else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = redact(text)
    return text if len(text) <= 300 else text[:297] + "..."


def unavailable(what: str, exc: BaseException, *, attempts: int | None = None) -> Exception:
    """The error to raise when ``what`` (e.g. "write part 3fa2… to s3://bucket/prefix") still failed
    transiently after the last attempt: a one-line
    :class:`~coralord_dagster.errors.StorageUnavailableError` (exit code 3), its cause set to ``exc``.

    >>> error = unavailable("read s3://k:secret@bucket/x", ConnectionRefusedError(111, "refused"), attempts=6)
    >>> print(str(error).replace("; ", ";\\n"))
    read s3://bucket/x: ConnectionRefusedError: [Errno 111] refused after 6 attempts;
    check the network/endpoint and retry
    """
    made = attempts or getattr(exc, "_coralord_attempts", None) or configured_attempts()
    plural = "attempt" if made == 1 else "attempts"
    message = f"{redact(what)}: {describe(exc)} after {made} {plural}; check the network/endpoint and retry"
    error = StorageUnavailableError(" ".join(message.split()))
    error.__cause__ = exc
    return error


def limit_backend_retries(fs: Any) -> None:
    """Cut a filesystem's own retry loop to :data:`S3FS_RETRIES` (s3fs only: others are left alone)."""
    if type(fs).__module__.startswith("s3fs") and hasattr(fs, "retries"):
        fs.retries = S3FS_RETRIES


def backend_options(protocol: str) -> dict[str, Any]:
    """Storage options that keep a backend's own retries short (see :data:`S3_STORAGE_OPTIONS`); the
    caller's options go over them."""
    if protocol in ("s3", "s3a"):
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in S3_STORAGE_OPTIONS.items()}
    return {}
