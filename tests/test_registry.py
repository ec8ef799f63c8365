from pathlib import Path

import git
import pytest

from coralord_dagster.errors import ConfigError, DatasetNotFoundError, RegistryError, VersionNotFoundError
from coralord_dagster.naming import Ref, SemVer
from coralord_dagster.registry import Registry


def commit(reg: Registry, name: str, version: str, text: str = "x") -> str:
    with reg.locked():
        return reg.commit_version(
            name, SemVer.parse(version), {"manifest.json": text.encode()}, {}, message=f"{name} {version}"
        )


def test_commit_tag_and_read_back(tmp_path: Path):
    reg = Registry.init(tmp_path / "reg", storage_url="../storage")
    assert reg.storage_url() == str((tmp_path / "storage").resolve())
    sha1 = commit(reg, "ds", "1.0.0", "one")
    commit(reg, "ds", "1.1.0", "two")
    commit(reg, "ds/sub", "1.0.0", "sub")
    tag = reg.repo.tags["ds-v1.0.0"]
    assert tag.tag is not None, "tags are annotated"
    assert tag.commit.hexsha == sha1
    assert [str(v.version) for v in reg.versions("ds")] == ["1.1.0", "1.0.0"]
    assert reg.read_file("ds-v1.0.0", "datasets/ds/manifest.json") == b"one"
    assert reg.read_file("ds/sub-v1.0.0", "datasets/ds/subsets/sub/manifest.json") == b"sub"
    assert reg.datasets() == ["ds", "ds/sub"]
    # One dataset's versions only (git selects its tags by pattern): not a subset's, not a longer name's.
    commit(reg, "ds_two", "3.0.0", "other")
    assert [str(v.version) for v in reg.versions("ds")] == ["1.1.0", "1.0.0"]
    assert [v.tag for v in reg.versions("ds/sub")] == ["ds/sub-v1.0.0"]
    assert [v.tag for v in reg.versions("ds_two")] == ["ds_two-v3.0.0"]
    assert reg.versions("d") == []
    assert reg.resolve(Ref.parse("ds")).tag == "ds-v1.1.0"
    assert reg.resolve(Ref.parse("ds@v1.0.0")).tag == "ds-v1.0.0"


def test_unknown_dataset_and_version(tmp_path: Path):
    reg = Registry.init(tmp_path / "reg", storage_url="s")
    commit(reg, "fashion_mnist", "1.0.0")
    with pytest.raises(DatasetNotFoundError, match="did you mean 'fashion_mnist'"):
        reg.resolve(Ref.parse("fashion_mnist/pullover"))
    with pytest.raises(VersionNotFoundError, match="published: v1.0.0"):
        reg.resolve(Ref.parse("fashion_mnist@v9.0.0"))


def test_a_failed_commit_leaves_nothing_visible(tmp_path: Path):
    reg = Registry.init(tmp_path / "reg", storage_url="s")
    commit(reg, "ds", "1.0.0", "one")
    head = reg.repo.head.commit.hexsha
    with pytest.raises(RegistryError, match="cannot commit ds-v1.0.0"):
        commit(reg, "ds", "1.0.0", "clash")  # the tag exists already
    assert reg.repo.head.commit.hexsha == head
    assert (tmp_path / "reg" / "datasets" / "ds" / "manifest.json").read_text() == "one"
    assert not reg.repo.is_dirty(untracked_files=True)


def test_push_to_a_bare_remote(tmp_path: Path, bare_remote: Path):
    reg = Registry.init(tmp_path / "reg", storage_url="s", remote=str(bare_remote))
    commit(reg, "ds", "1.0.0")
    with reg.locked():
        reg.push()
    remote = git.Repo(bare_remote)
    assert [t.name for t in remote.tags] == ["ds-v1.0.0"]
    assert remote.heads.main.commit.hexsha == reg.repo.head.commit.hexsha


def test_open_a_registry_by_git_url(tmp_path: Path, bare_remote: Path):
    reg = Registry.init(tmp_path / "reg", storage_url="s", remote=str(bare_remote))
    commit(reg, "ds", "1.0.0")
    with reg.locked():
        reg.push()
    clone = Registry.open(f"file://{bare_remote}")
    assert clone.read_only and [str(v.version) for v in clone.versions("ds")] == ["1.0.0"]
    commit(reg, "ds", "1.1.0")
    with reg.locked():
        reg.push()
    assert [str(v.version) for v in Registry.open(f"file://{bare_remote}").versions("ds")] == [
        "1.1.0",
        "1.0.0",
    ]
    with pytest.raises(RegistryError, match="read-only"), clone.locked():
        pass
    with pytest.raises(ConfigError, match="relative path 's'.*set CORALORD_STORAGE"):
        clone.storage_url()


def test_missing_registry_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RegistryError, match="no registry at"):
        Registry(tmp_path / "nothing")


def test_part_links_sit_beside_the_croissant_but_never_in_git(tmp_path: Path):
    """Links name paths on the publisher's disk: the working tree has them (mlcroissant reads the
    registry's Croissant there), Git never does, and a new version replaces the old version's links."""
    reg = Registry.init(tmp_path / "reg", storage_url="../storage")
    targets = tmp_path / "storage" / "parts"
    targets.mkdir(parents=True)
    for i in range(300):
        (targets / f"{i:04d}.parquet").write_bytes(b"x%d" % i)

    def commit(version: str, ids: range) -> None:
        links = {f"parts/train/{i}-{i:04d}.parquet": str(targets / f"{i:04d}.parquet") for i in ids}
        with reg.locked():
            reg.commit_version("ds", SemVer.parse(version), {"manifest.json": b"m"}, links, message=version)

    commit("1.0.0", range(300))
    tree = reg.repo.tags["ds-v1.0.0"].commit.tree / "datasets" / "ds"
    assert [b.name for b in tree.blobs] == ["manifest.json"] and not tree.trees
    link = reg.path / "datasets" / "ds" / "parts" / "train" / "7-0007.parquet"
    assert link.is_symlink() and link.read_bytes() == b"x7"
    assert reg.repo.git.status("--porcelain") == ""  # the links are not even untracked noise

    commit("1.1.0", range(10, 12))
    assert sorted(p.name for p in (reg.path / "datasets" / "ds" / "parts" / "train").iterdir()) == [
        "10-0010.parquet",
        "11-0011.parquet",
    ]
    assert not [p for p in (reg.path / "datasets" / "ds").iterdir() if p.name.startswith(".parts")]
    assert reg.repo.git.fsck("--no-progress") == ""
