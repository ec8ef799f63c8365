"""The same flow with parts on S3: a real moto server process on 127.0.0.1, credentials from the env."""

import json
import subprocess
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import s3fs

from coralord_dagster.client import open_dataset
from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.use_case import run_pipeline

from .conftest import BIN
from .helpers import asset_of, croissant_records, field_values

STORAGE = "s3://datasets/coralord"


def test_publish_fetch_verify_on_s3(fmnist, use_case_copy, s3, tmp_path: Path):
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
    doc = json.loads((ws.registry.path / "datasets/fashion_mnist/croissant.json").read_text())
    assert all(
        d["contentUrl"].startswith("s3://") for d in doc["distribution"] if d["@type"] == "cr:FileObject"
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

    # mlcroissant reads a local copy of the S3 version.
    copy = open_dataset("fashion_mnist", workspace=ws).local_copy(tmp_path / "copy")
    records = croissant_records(copy)
    assert field_values(records, "label") == run_pipeline(fmnist).column("label").to_pylist()

    # A flipped byte in S3 fails verify with exit 1, naming the part.
    part = manifest.parts[0]
    data = bytearray(fs.cat_file(part.url))
    data[200] ^= 0x04
    fs.pipe_file(part.url, bytes(data))
    proc = subprocess.run([*cli, "verify", "fashion_mnist"], check=False, capture_output=True, text=True)
    assert proc.returncode == 1 and part.sha256 in proc.stdout

    # No secret reaches the registry (files and Git objects) or the catalog.
    secret = s3["AWS_SECRET_ACCESS_KEY"].encode()
    key = s3["AWS_ACCESS_KEY_ID"].encode()
    for path in [*ws.registry.path.rglob("*"), ws.catalog.path]:
        if path.is_file() and not path.is_symlink():
            blob = path.read_bytes()
            assert secret not in blob and key not in blob, path
    history = ws.registry.repo.git.log("--all", "-p", "--format=%H %s %b").encode()
    assert b"fashion_mnist-v1.0.0" in history and secret not in history and key not in history
