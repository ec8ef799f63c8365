"""The same flow with parts on S3: a real moto server process on 127.0.0.1, credentials from the env."""

import json
import subprocess
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import s3fs

from coralord_dagster.client import open_dataset
from coralord_dagster.descriptor import load_subsets
from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.subsets import publish_subset
from coralord_dagster.use_case import run_pipeline

from .conftest import BIN
from .croissant_check import assert_croissant_gives, read_in_subprocess
from .helpers import asset_of

STORAGE = "s3://datasets/coralord"


def allow_public_reads(endpoint: str, bucket: str, prefix: str, **credentials: str) -> None:
    """A bucket policy letting anyone GET the parts, as a team publishing open data sets it."""
    import boto3

    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
    }
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    boto3.client("s3", endpoint_url=endpoint, **credentials).put_bucket_policy(Bucket=bucket, Policy=policy)


def test_publish_fetch_verify_on_s3(fmnist, use_case_copy, s3, tmp_path: Path):
    allow_public_reads(s3["AWS_ENDPOINT_URL"], "datasets", "coralord/parts/")
    resource = CoralordResource(registry=str(tmp_path / "reg"), storage=STORAGE)
    defs = build_definitions(use_case_copy.parent, resource=resource)
    res = {"coralord": resource, "coralord_io_manager": CoralordIOManager(coralord=resource)}
    result = dg.materialize([asset_of(defs, "fashion_mnist"), *defs.asset_checks], resources=res)
    assert result.success
    meta = result.asset_materializations_for_node("fashion_mnist")[0].metadata
    assert meta["coralord/storage_url"].value == STORAGE

    fs = s3fs.S3FileSystem()
    ws = resource.workspace()
    manifest = ws.registry.manifest(ws.registry.latest("fashion_mnist"))
    for part in manifest.parts:
        assert part.url.startswith(f"{STORAGE}/parts/{part.sha256[:2]}/")
        assert fs.info(part.url)["size"] == part.bytes
    # The Croissant names each part by its HTTP address on the endpoint: mlcroissant downloads every
    # part from there and checks its sha256, with no credentials and no coralord.
    croissant = ws.registry.path / "datasets/fashion_mnist/croissant.json"
    doc = json.loads(croissant.read_text())
    urls = [d["contentUrl"] for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
    assert urls == [
        f"{s3['AWS_ENDPOINT_URL']}/datasets/coralord/parts/{p.sha256[:2]}/{p.sha256}.parquet"
        for p in manifest.parts
    ]
    over_http = read_in_subprocess(croissant, "part_files", tmp_path / "croissant-cache-1")
    assert over_http.returncode == 0 and over_http.stdout.split() == [str(len(manifest.parts))], (
        over_http.stderr
    )

    # Identical content on S3 writes nothing.
    again = dg.materialize([asset_of(defs, "fashion_mnist")], resources=res)
    assert (
        again.asset_materializations_for_node("fashion_mnist")[0].metadata["coralord/bytes_written"].value
        == 0
    )

    # The CLI, as a user runs it: credentials and endpoint from the environment, storage from the registry.
    cli = [str(BIN / "coralord"), "--registry", str(ws.registry.path)]
    out = tmp_path / "out.parquet"
    assert subprocess.run([*cli, "get", "fashion_mnist@v1.0.0", "-o", str(out)], check=False).returncode == 0
    assert pq.read_table(out).equals(run_pipeline(fmnist))
    assert subprocess.run([*cli, "verify", "fashion_mnist"], check=False, capture_output=True).returncode == 0

    # mlcroissant reads the version exported at its tag (parts fetched from S3, checked), and a subset.
    export = [*cli, "export", "fashion_mnist@v1.0.0", str(tmp_path / "copy")]
    assert subprocess.run(export, check=False, capture_output=True).returncode == 0
    assert_croissant_gives(tmp_path / "copy" / "croissant.json", run_pipeline(fmnist), "S3 export")
    pullover = next(s for s in load_subsets(fmnist) if s.spec.name == "pullover")
    publish_subset(fmnist, pullover, ws)
    export = [*cli, "export", "fashion_mnist/pullover", str(tmp_path / "pullover")]
    assert subprocess.run(export, check=False, capture_output=True).returncode == 0
    rows = open_dataset("fashion_mnist/pullover", workspace=ws).to_arrow()
    assert_croissant_gives(tmp_path / "pullover" / "croissant.json", rows, "S3 subset export")

    # A flipped byte in S3 fails verify with exit 1, naming the part.
    part = manifest.parts[0]
    data = bytearray(fs.cat_file(part.url))
    data[200] ^= 0x04
    fs.pipe_file(part.url, bytes(data))
    proc = subprocess.run([*cli, "verify", "fashion_mnist"], check=False, capture_output=True, text=True)
    assert proc.returncode == 1 and part.sha256 in proc.stdout
    # ... and mlcroissant, fetching the part over HTTP, refuses it by its sha256.
    tampered = read_in_subprocess(croissant, "part_files", tmp_path / "croissant-cache-2")
    assert tampered.returncode != 0 and f"Expected: {part.sha256}" in tampered.stderr

    # No secret reaches the registry (files and Git objects) or the catalog.
    secret = s3["AWS_SECRET_ACCESS_KEY"].encode()
    key = s3["AWS_ACCESS_KEY_ID"].encode()
    for path in [*ws.registry.path.rglob("*"), ws.catalog.path]:
        if path.is_file() and not path.is_symlink():
            blob = path.read_bytes()
            assert secret not in blob and key not in blob, path
    history = ws.registry.repo.git.log("--all", "-p", "--format=%H %s %b").encode()
    assert b"fashion_mnist-v1.0.0" in history and secret not in history and key not in history
