"""Source fingerprints against real servers on 127.0.0.1 (HTTP, a Hub-like API, S3, Git)."""

import json
import os
import time
from pathlib import Path

import git
import pytest

from coralord_dagster.descriptor import CheckPolicy
from coralord_dagster.sources import Source, SourceError, check_many, fingerprint

from .servers import Behaviour, http_server


def local_source(path: Path, files: tuple[str, ...] = ()) -> Source:
    return Source(kind="url", uri=str(path), base=str(path), files=files)


def test_local_touch_is_no_change_but_new_bytes_are(tmp_path: Path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n2\n")
    src = local_source(tmp_path, ("*.csv",))
    first = fingerprint(src)
    assert sorted(first.details["items"]) == ["a.csv", "b.csv"]
    os.utime(tmp_path / "a.csv", ns=(time.time_ns(), time.time_ns() + 10**9))
    touched = fingerprint(src, first)
    assert touched.value == first.value and touched.details["stat"]["a.csv"] != first.details["stat"]["a.csv"]
    (tmp_path / "a.csv").write_text("x\n3\n")
    changed = fingerprint(src, touched)
    assert changed.value != first.value and changed.changes_from(touched) == ["a.csv"]
    with pytest.raises(SourceError, match="no file matches"):
        fingerprint(local_source(tmp_path, ("*.parquet",)))
    with pytest.raises(SourceError, match="does not exist"):
        fingerprint(local_source(tmp_path / "missing"))


def test_http_etags_conditional_requests_and_failures():
    b = Behaviour(files={"data/train.csv": b"a,b\n1,2\n"})
    with http_server(b) as url:
        src = Source(kind="url", uri=url, base=url, files=("data/train.csv",))
        first = fingerprint(src)
        again = fingerprint(src, first)
        assert again.value == first.value and b.not_modified == 1, "unchanged files cost a 304"
        b.files["data/train.csv"] = b"a,b\n1,3\n"
        changed = fingerprint(src, again)
        assert changed.value != first.value and changed.changes_from(again) == ["data/train.csv"]
        b.status = 500
        with pytest.raises(SourceError, match="HTTP 500"):
            fingerprint(src, changed)
        b.status, b.delay_s = None, 2.0
        with pytest.raises(SourceError, match="(?i)timeout|timed out"):
            fingerprint(src, changed, timeout=0.3)
        b.delay_s = 0
        missing = Source(kind="url", uri=url, base=url, files=("nope.csv",))
        with pytest.raises(SourceError, match="HTTP 404"):
            fingerprint(missing)
    with pytest.raises(SourceError, match=url.split("//")[1]):
        fingerprint(src)  # the server is down


def test_huggingface_revision_and_file_etags(tmp_path: Path):
    (tmp_path / "fashion_mnist" / "train").mkdir(parents=True)
    (tmp_path / "fashion_mnist" / "train" / "0000.parquet").write_bytes(b"PAR1...")
    b = Behaviour(hub_sha="a" * 40, root=tmp_path)
    with http_server(b) as endpoint:
        src = Source(
            kind="huggingface",
            uri=f"{endpoint}/datasets/zalando-datasets/fashion_mnist/resolve/refs%2Fconvert%2Fparquet",
            base=f"{endpoint}/datasets/zalando-datasets/fashion_mnist/resolve/refs%2Fconvert%2Fparquet",
            files=("fashion_mnist/train/0000.parquet",),
            options={
                "endpoint": endpoint,
                "repo": "zalando-datasets/fashion_mnist",
                "revision": "refs/convert/parquet",
            },
        )
        assert src.checker == "huggingface"
        first = fingerprint(src)
        assert first.details["items"]["revision"] == "a" * 40
        b.hub_sha = "b" * 40
        moved = fingerprint(src, first)
        assert moved.value != first.value and moved.changes_from(first) == ["revision"]
        b.hub_sha = None  # an endpoint that is not a Hub: clear error
        with pytest.raises(SourceError, match="HTTP 404"):
            fingerprint(src)


def test_s3_object_overwrite_with_versioning(s3, tmp_path: Path):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("upstream")
    import boto3

    boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"]).put_bucket_versioning(
        Bucket="upstream", VersioningConfiguration={"Status": "Enabled"}
    )
    fs.pipe_file("upstream/raw/data.csv", b"x\n1\n")
    src = Source(kind="url", uri="s3://upstream/raw", base="s3://upstream/raw", files=("data.csv",))
    first = fingerprint(src)
    item = first.details["items"]["upstream/raw/data.csv"]
    assert item["etag"] and item["version_id"]
    assert fingerprint(src, first).value == first.value
    fs.pipe_file("upstream/raw/data.csv", b"x\n2\n")
    changed = fingerprint(src, first)
    assert changed.value != first.value
    assert changed.details["items"]["upstream/raw/data.csv"]["version_id"] != item["version_id"]
    prefix = Source(kind="url", uri="s3://upstream/raw", base="s3://upstream/raw")
    assert list(fingerprint(prefix).details["items"]) == ["upstream/raw/data.csv"]
    with pytest.raises(SourceError):
        fingerprint(Source(kind="url", uri="s3://upstream/none", base="s3://upstream/none", files=("x",)))


def test_git_ref_moves(tmp_path: Path, bare_remote: Path):
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    work.git.config("user.name", "t")
    work.git.config("user.email", "t@example.org")
    (tmp_path / "work" / "data.csv").write_text("x\n1\n")
    work.git.add("data.csv")
    work.git.commit("-m", "one")
    work.git.push(str(bare_remote), "main")
    src = Source(
        kind="git", uri=str(bare_remote), base=str(bare_remote), files=("data.csv",), options={"ref": "main"}
    )
    first = fingerprint(src)
    assert first.details["items"]["commit"] == work.head.commit.hexsha
    (tmp_path / "work" / "data.csv").write_text("x\n2\n")
    work.git.commit("-am", "two")
    work.git.push(str(bare_remote), "main")
    assert fingerprint(src, first).details["items"]["commit"] == work.head.commit.hexsha
    assert src.open("data.csv").read() == b"x\n2\n", "the pipeline reads the ref's files"
    with pytest.raises(SourceError, match="no ref 'nope'"):
        fingerprint(Source(kind="git", uri=str(bare_remote), base=str(bare_remote), options={"ref": "nope"}))


def test_croissant_checksums(tmp_path: Path):
    doc = {
        "@type": "sc:Dataset",
        "version": "1.0.0",
        "distribution": [{"@type": "cr:FileObject", "@id": "train", "sha256": "1" * 64}],
    }
    path = tmp_path / "croissant.json"
    path.write_text(json.dumps(doc))
    src = Source(kind="croissant", uri=str(path), base=str(tmp_path), options={"croissant": str(path)})
    first = fingerprint(src)
    doc["distribution"][0]["sha256"] = "2" * 64
    path.write_text(json.dumps(doc))
    assert fingerprint(src, first).changes_from(first) == ["train"]
    path.write_text("{not json")
    with pytest.raises(SourceError, match="not a JSON-LD"):
        fingerprint(src)


def test_one_failing_source_does_not_stop_the_others(tmp_path: Path):
    (tmp_path / "ok.csv").write_text("x\n")
    b = Behaviour(status=503)
    with http_server(b) as url:
        results = check_many(
            [
                ("ok", local_source(tmp_path, ("ok.csv",)), None),
                ("down", Source(kind="url", uri=url, base=url, files=("x",)), None),
            ]
        )
    assert not isinstance(results["ok"], SourceError)
    assert isinstance(results["down"], SourceError) and "HTTP 503" in str(results["down"])


def test_cron_and_interval_cadence():
    from coralord_dagster.orchestration.sources import is_due

    now = time.time()
    assert is_due(CheckPolicy(interval_seconds=60), None, now)
    assert not is_due(CheckPolicy(interval_seconds=60), now - 30, now)
    assert is_due(CheckPolicy(interval_seconds=60), now - 61, now)
    assert is_due(CheckPolicy(cron="* * * * *"), now - 120, now)
    assert not is_due(CheckPolicy(cron="0 0 1 1 *"), now - 60, now) or time.gmtime(now).tm_yday == 1
    for bad in ("daily", "99 * * * *", "* * * * * *"):
        with pytest.raises(ValueError, match="five fields"):
            CheckPolicy(cron=bad)
