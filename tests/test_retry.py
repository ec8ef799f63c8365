"""The storage retry policy, on the errors a real s3fs raises when a real S3 server (moto, behind the
fault-injecting proxy) fails: which are transient, how often a call is tried, what the user is told."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from coralord_dagster import retry
from coralord_dagster.errors import ConfigError, IntegrityError, StorageError, StorageUnavailableError
from coralord_dagster.retry import is_transient, storage_call, storage_retry, unavailable

from .faulty_proxy import FaultyS3, faulty_s3  # noqa: F401 - a fixture

OBJECT = "datasets/probe/table.parquet"
TABLE = pa.table({"x": list(range(20_000)), "y": [f"row {i}" for i in range(20_000)]})


def _parquet() -> bytes:
    sink = io.BytesIO()
    pq.write_table(TABLE, sink, row_group_size=5_000)
    return sink.getvalue()


@pytest.fixture
def faulty(faulty_s3: FaultyS3, s3_server: str) -> FaultyS3:  # noqa: F811 - the fixture above
    """The proxy, with a Parquet object stored behind it (written straight to moto)."""
    s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True).pipe_file(OBJECT, _parquet())
    return faulty_s3


def bare_fs(endpoint: str, **options: Any) -> s3fs.S3FileSystem:
    """An s3fs that does not retry by itself: every fault reaches the caller as s3fs raises it."""
    options.setdefault("config_kwargs", {"retries": {"mode": "standard", "total_max_attempts": 1}})
    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint, skip_instance_cache=True, default_cache_type="none", **options
    )
    fs.retries = 1
    return fs


def duck_read(fs: s3fs.S3FileSystem) -> Any:
    con = duckdb.connect()
    try:
        con.register_filesystem(fs)
        con.execute("SET enable_external_file_cache = false")
        return con.sql(f"SELECT sum(x) FROM read_parquet('s3://{OBJECT}') WHERE x > 100").fetchall()
    finally:
        con.close()


OPERATIONS: dict[str, Callable[[s3fs.S3FileSystem], Any]] = {
    "head": lambda fs: fs.info(OBJECT),
    "get": lambda fs: fs.cat_file(OBJECT),
    "range": lambda fs: fs.cat_file(OBJECT, start=100, end=30_000),
    "put": lambda fs: fs.pipe_file("datasets/probe/new.bin", b"z" * 50_000),
    "list": lambda fs: fs.ls("datasets/probe", refresh=True),
    "pyarrow": lambda fs: pq.read_table(OBJECT, filesystem=fs),
    "duckdb": duck_read,
}


def raised(func: Callable[[], Any]) -> BaseException:
    try:
        func()
    except Exception as e:
        return e
    pytest.fail("the call succeeded although every request fails")


def chain(exc: BaseException) -> list[str]:
    return [type(e).__name__ for e in retry._chain(exc)]


@pytest.mark.parametrize("op", sorted(OPERATIONS))
@pytest.mark.parametrize("kind", ["500", "503", "reset", "truncate", "refuse"])
def test_every_fault_through_s3fs_is_transient(faulty: FaultyS3, kind: str, op: str):
    fs = bare_fs(faulty.endpoint)
    if op in ("range", "duckdb", "pyarrow"):
        fs.info(OBJECT)  # the size is known before the faults start: the faults hit the data requests
    faulty.configure(rate=1.0, kinds=[kind])
    exc = raised(lambda: OPERATIONS[op](fs))
    assert faulty.stats.failed > 0, faulty.stats.summary()
    assert is_transient(exc), (type(exc), chain(exc), str(exc)[-300:])
    # One line for the user, without a traceback's text even when DuckDB handed one over.
    line = retry.describe(exc)
    assert "\n" not in line and "Traceback" not in line and line


def test_what_s3fs_raises(faulty: FaultyS3):
    """The shapes the module docstring describes (if s3fs changes them, is_transient must be rechecked)."""
    import aiohttp
    import botocore.exceptions

    fs = bare_fs(faulty.endpoint)
    faulty.configure(rate=1.0, kinds=["500"])
    e = raised(lambda: fs.pipe_file("datasets/probe/a", b"a"))
    assert type(e) is OSError and e.errno == 121 and isinstance(e.__cause__, botocore.exceptions.ClientError)
    assert e.__cause__.response["Error"]["Code"] == "InternalError"

    faulty.configure(kinds=["503"])
    e = raised(lambda: fs.info(OBJECT))  # a HEAD answer has no body: the code is the status
    assert type(e) is OSError and e.errno == 16 and e.__cause__.response["Error"]["Code"] == "503"
    e = raised(lambda: fs.ls("datasets/probe", refresh=True))
    assert e.__cause__.response["Error"]["Code"] == "SlowDown"

    faulty.configure(kinds=["refuse"])
    e = raised(lambda: fs.info(OBJECT))
    assert isinstance(e, botocore.exceptions.EndpointConnectionError) and not isinstance(e, OSError)
    assert chain(e)[1:] == ["ClientOSError", "ConnectionResetError"]

    faulty.configure(kinds=["truncate"])
    e = raised(lambda: fs.cat_file(OBJECT, start=0, end=10_000))
    assert isinstance(e, aiohttp.ClientPayloadError) and not isinstance(e, OSError)
    e = raised(lambda: fs.ls("datasets/probe", refresh=True))
    assert isinstance(e, botocore.exceptions.ConnectionClosedError)

    faulty.configure(kinds=["reset"])
    e = raised(lambda: duck_read(fs))
    assert type(e) is duckdb.Error and "Traceback" in str(e)  # not duckdb.IOException


def test_connection_refused_and_read_timeout_are_transient(faulty: FaultyS3):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed
    e = raised(lambda: bare_fs(dead).info(OBJECT))
    assert "ConnectionRefusedError" in chain(e) and is_transient(e)

    faulty.configure(rate=1.0, kinds=["stall"])
    slow = bare_fs(
        faulty.endpoint,
        config_kwargs={"retries": {"total_max_attempts": 1}, "read_timeout": 0.5, "connect_timeout": 1},
    )
    e = raised(lambda: slow.info(OBJECT))
    assert type(e).__name__ == "ReadTimeoutError" and is_transient(e)


@pytest.mark.parametrize("kind", ["403", "400"])
def test_refusals_and_bad_requests_are_not_transient(faulty: FaultyS3, kind: str):
    fs = bare_fs(faulty.endpoint)
    faulty.configure(rate=1.0, kinds=[kind])
    for op in ("head", "put", "list"):
        e = raised(lambda op=op: OPERATIONS[op](fs))
        assert not is_transient(e), (op, chain(e), str(e))
    assert isinstance(
        raised(lambda: fs.pipe_file("datasets/probe/b", b"b")), PermissionError if kind == "403" else OSError
    )


def test_missing_objects_are_not_transient(faulty: FaultyS3):
    fs = bare_fs(faulty.endpoint)
    for call in (
        lambda: fs.info("datasets/probe/missing"),
        lambda: fs.cat_file("datasets/probe/missing"),
        lambda: fs.cat_file("nosuchbucket/key"),
    ):
        e = raised(call)
        assert isinstance(e, FileNotFoundError) and not is_transient(e)
    con = duckdb.connect()
    con.register_filesystem(fs)
    e = raised(
        lambda: con.sql("SELECT * FROM read_parquet('s3://datasets/probe/missing.parquet')").fetchall()
    )
    con.close()
    assert not is_transient(e), str(e)


def test_coralord_errors_are_never_transient():
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as e:
            raise StorageError("storage s3://b: cannot write part abc") from e
    except StorageError as wrapped:
        assert not is_transient(wrapped)  # retry below the wrapping, not above it
    assert not is_transient(IntegrityError("part abc is corrupt"))
    assert not is_transient(unavailable("read", TimeoutError("timed out"), attempts=2))


# --- the bound ----------------------------------------------------------------------------------------


def test_retries_stop_after_the_configured_attempts_and_reraise(
    faulty: FaultyS3, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CORALORD_STORAGE_RETRIES", "3")
    fs = bare_fs(faulty.endpoint)
    faulty.configure(rate=1.0, kinds=["503"])
    before = faulty.stats.requests
    e = raised(lambda: storage_retry(fs.pipe_file)("datasets/probe/c", b"c" * 100))
    assert type(e) is OSError and is_transient(e)  # the storage error itself, not a tenacity.RetryError
    assert faulty.stats.requests - before == 3  # one PUT per attempt: no retry inside s3fs or botocore
    assert getattr(e, "_coralord_attempts", None) == 3


def test_default_bound_is_six_attempts_within_seconds(faulty: FaultyS3):
    fs = bare_fs(faulty.endpoint)
    faulty.configure(rate=1.0, kinds=["reset"])
    before, start = faulty.stats.requests, time.monotonic()
    e = raised(lambda: storage_retry(fs.pipe_file)("datasets/probe/d", b"d"))
    elapsed = time.monotonic() - start
    assert is_transient(e)
    assert faulty.stats.requests - before >= retry.DEFAULT_ATTEMPTS
    assert elapsed < 10, elapsed  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff, plus jitter


def test_transient_faults_are_retried_until_success(faulty: FaultyS3):
    fs = bare_fs(faulty.endpoint)
    faulty.configure(rate=1.0, kinds=["truncate"])
    attempts = []

    def read() -> bytes:
        attempts.append(1)
        if len(attempts) == 3:
            faulty.configure(rate=0.0)  # the outage ends
        return fs.cat_file(OBJECT)

    assert storage_retry(read)() == _parquet()
    assert len(attempts) == 3 and faulty.stats.failed >= 2


def test_permanent_errors_are_tried_once(faulty: FaultyS3):
    fs = bare_fs(faulty.endpoint)
    before = faulty.stats.requests
    with pytest.raises(FileNotFoundError):
        storage_retry(fs.cat_file)("datasets/probe/missing")
    assert faulty.stats.requests - before <= 2  # a HEAD and/or a GET, once
    calls = []

    @storage_retry
    def ours() -> None:
        calls.append(1)
        raise IntegrityError("part abc is corrupt")

    with pytest.raises(IntegrityError):
        ours()
    assert calls == [1]


def test_backend_options_keep_inner_retries_short(faulty: FaultyS3):
    """With the recommended options s3fs and botocore make 2 requests for a failing call, not 25."""
    options = retry.backend_options("s3")
    fs = s3fs.S3FileSystem(endpoint_url=faulty.endpoint, skip_instance_cache=True, **options)
    retry.limit_backend_retries(fs)
    assert fs.retries == retry.S3FS_RETRIES
    faulty.configure(rate=1.0, kinds=["503"])
    for call in (
        lambda: fs.pipe_file("datasets/probe/e", b"e"),
        lambda: fs.ls("datasets/probe", refresh=True),
    ):
        before = faulty.stats.requests
        e = raised(call)
        assert is_transient(e) and faulty.stats.requests - before == 2
    assert retry.backend_options("file") == {}
    with pytest.raises(TypeError, match="retries"):  # why limit_backend_retries exists
        s3fs.S3FileSystem(endpoint_url=faulty.endpoint, skip_instance_cache=True, retries=1).ls("datasets")


def test_invalid_attempts_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORALORD_STORAGE_RETRIES", "many")
    with pytest.raises(ConfigError, match="CORALORD_STORAGE_RETRIES"):
        retry.configured_attempts()
    monkeypatch.setenv("CORALORD_STORAGE_RETRIES", "0")
    assert retry.configured_attempts() == 1


# --- what the user is told ----------------------------------------------------------------------------


def test_unavailable_is_one_line_exit_3_without_credentials(
    faulty: FaultyS3, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CORALORD_STORAGE_RETRIES", "2")
    secret = faulty.env["AWS_SECRET_ACCESS_KEY"]
    fs = bare_fs(faulty.endpoint)
    faulty.configure(rate=1.0, kinds=["refuse"])
    with pytest.raises(StorageUnavailableError) as info:
        storage_call(
            f"write part abc to s3://{faulty.env['AWS_ACCESS_KEY_ID']}:{secret}@datasets/coralord",
            fs.pipe_file,
            "datasets/probe/f",
            b"f",
        )
    error = info.value
    message = str(error)
    assert error.exit_code == 3 and isinstance(error, StorageError)
    assert "\n" not in message and secret not in message and faulty.env["AWS_ACCESS_KEY_ID"] not in message
    assert message.startswith("write part abc to s3://datasets/coralord: EndpointConnectionError")
    assert message.endswith("after 2 attempts; check the network/endpoint and retry")
    assert is_transient(error.__cause__)

    # Permanent errors pass through storage_call unchanged.
    faulty.configure(rate=0.0)
    with pytest.raises(FileNotFoundError):
        storage_call("read part abc", fs.cat_file, "datasets/probe/missing")


def test_redact():
    assert retry.redact("https://user:pa55@host:9000/b?X-Amz-Signature=abcdef&x=1") == (
        "https://host:9000/b?X-Amz-Signature=***&x=1"
    )
    assert retry.redact("s3://bucket/key") == "s3://bucket/key"
