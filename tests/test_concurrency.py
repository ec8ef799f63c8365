"""Several processes publishing into one registry at once: no commit may be lost."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from coralord_dagster.catalog import Catalog
from coralord_dagster.registry import Registry
from coralord_dagster.workspace import Workspace

PUBLISHER = """
import os, sys, time, pathlib
import numpy as np, pyarrow as pa
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.workspace import Workspace
registry, name, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
ws = Workspace.open(registry, create=True)
table = pa.table({"i": np.arange(2000) * len(name), "name": [name] * 2000})
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.005)
info = DatasetInfo(name=name, description=name, license="CC0-1.0")
result = ws.publisher().publish(table, info, part_rows=256)
print(result.tag)
"""


def release_when_ready(folder: Path, procs: list[subprocess.Popen[str]], go: Path) -> None:
    """Start every process's publish at once: wait until each has imported and signalled, then go."""
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < len(procs):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
        assert time.monotonic() < deadline, "publishers did not start"
        time.sleep(0.01)
    go.touch()


@pytest.mark.slow
def test_four_processes_publish_four_datasets_at_once(tmp_path: Path):
    registry = tmp_path / "registry"
    Workspace.open(registry, create=True)
    go = tmp_path / "go"
    names = ["alpha", "beta", "gamma", "delta"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(registry), n, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    release_when_ready(tmp_path, procs, go)
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]

    reg = Registry(registry)
    assert sorted(t.name for t in reg.repo.tags) == sorted(f"{n}-v1.0.0" for n in names)
    subjects = reg.repo.git.log("--format=%s").splitlines()
    assert sum(s.split(":")[0] in {f"{n}-v1.0.0" for n in names} for s in subjects) == 4
    for n in names:  # every tag's tree holds its own dataset
        assert reg.manifest(reg.latest(n)).rows == 2000
    assert not reg.repo.is_dirty(untracked_files=True)
    catalog = Catalog(registry / ".git" / "coralord" / "catalog.duckdb")
    assert sorted(r[0] for r in catalog.query("SELECT name FROM datasets")) == sorted(names)


@pytest.mark.slow
def test_concurrent_publishers_of_one_dataset_each_get_a_version(tmp_path: Path):
    registry = tmp_path / "registry"
    Workspace.open(registry, create=True)
    go = tmp_path / "go"
    script = PUBLISHER.replace("np.arange(2000) * len(name)", "np.arange(2000) * int(sys.argv[4])").replace(
        "DatasetInfo(name=name,", "DatasetInfo(name='shared',"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(registry), "shared", str(go), str(k)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (1, 2, 3)
    ]
    release_when_ready(tmp_path, procs, go)
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    versions = [str(v.version) for v in Registry(registry).versions("shared")]
    assert versions == ["3.0.0", "2.0.0", "1.0.0"], "each publisher decided against the version before it"
