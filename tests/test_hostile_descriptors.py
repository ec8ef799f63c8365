"""Untrusted content stays data: a descriptor or subset file from someone else's registry never reads
or writes the consumer's files, environment or credentials, and bad input is one clear error naming the
file and the field (exit code 2 from ``coralord validate``), never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.descriptor import (
    discover_descriptors,
    load_descriptor,
    load_subsets,
    parse_descriptor,
)
from coralord_dagster.errors import CoralordError, DescriptorError, PipelineError
from coralord_dagster.sources import Source, SourceError, git_checkout
from coralord_dagster.sources.fingerprint import fingerprint
from coralord_dagster.yamlfile import MAX_FILE_BYTES

HEADER = """\
name: hostile
description: A descriptor from someone else's registry.
license: MIT
"""
LOCAL_SOURCE = "source:\n  kind: url\n  url: data\n"
PIPELINE = "pipeline: pipeline.py:build\n"
BASE = HEADER + LOCAL_SOURCE + PIPELINE
SECRET = "hunter2-s3cr3t"
PIPELINE_CODE = "def build(source):\n    pass\n"


def use_case(folder: Path, descriptor: str | bytes = BASE, pipeline: str = PIPELINE_CODE) -> Path:
    """A use case folder on disk: its descriptor, a pipeline module and an (empty) local source."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "descriptor.yaml"
    if isinstance(descriptor, bytes):
        path.write_bytes(descriptor)
    else:
        path.write_text(descriptor, encoding="utf-8")
    (folder / "pipeline.py").write_text(pipeline)
    (folder / "data").mkdir(exist_ok=True)
    return path


def validate(path: Path) -> str:
    """``coralord validate path`` must refuse with exit code 2 and one line, no traceback; its output."""
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coralord: error:"), result.output
    return result.output


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (rather than hang the suite) if the block runs longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- 1. Decoding -----------------------------------------------------------------------------------

NOT_UTF8 = {
    "binary": bytes(range(256)) * 4,
    "utf-16 with BOM": BASE.encode("utf-16"),
    "utf-16-le without BOM": BASE.encode("utf-16-le"),
    "latin-1": (BASE + "citation: Müller, Café\n").encode("latin-1"),
    "png header": b"\x89PNG\r\n\x1a\n" + bytes(64),
}


@pytest.mark.parametrize("case", sorted(NOT_UTF8))
def test_descriptor_that_is_not_utf8(case: str, tmp_path: Path):
    path = use_case(tmp_path / "uc", NOT_UTF8[case])
    with pytest.raises(DescriptorError, match="not UTF-8 text") as err:
        load_descriptor(path)
    assert str(path) in str(err.value)
    assert "not UTF-8 text" in validate(path)


@pytest.mark.parametrize("case", sorted(NOT_UTF8))
def test_subset_file_that_is_not_utf8(case: str, tmp_path: Path):
    path = use_case(tmp_path / "uc")
    subset = path.parent / "subsets" / "broken.yaml"
    subset.parent.mkdir()
    subset.write_bytes(NOT_UTF8[case])
    with pytest.raises(DescriptorError, match="not UTF-8 text") as err:
        load_subsets(load_descriptor(path))
    assert str(subset) in str(err.value)
    assert "not UTF-8 text" in validate(path)


@pytest.mark.parametrize(
    "text, kind",
    [
        (f"- {SECRET}\n- more\n", "a list"),
        (f"{SECRET}\n", "a string"),
        (f'"{SECRET}"\n', "a string"),
        ("12345\n", "a number"),
        ("", "an empty document"),
        ("# only a comment\n", "an empty document"),
    ],
)
def test_non_mapping_top_level_does_not_echo_the_text(text: str, kind: str, tmp_path: Path):
    path = use_case(tmp_path / "uc", text)
    with pytest.raises(DescriptorError, match=f"expected a mapping of fields.*got {kind}") as err:
        load_descriptor(path)
    assert SECRET not in str(err.value) and str(path) in str(err.value)
    assert SECRET not in validate(path)
    subset = path.parent / "subsets" / "leak.yaml"
    use_case(path.parent)  # a valid descriptor, the subset file holding the text
    subset.parent.mkdir()
    subset.write_text(text)
    with pytest.raises(DescriptorError, match=f"got {kind}") as err:
        load_subsets(load_descriptor(path))
    assert SECRET not in str(err.value) and str(subset) in str(err.value)


# --- 2. YAML bounds --------------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: 9 levels of 9 aliases expand to 9**9 (387 million) strings."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def indented(block: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in block.splitlines())


BOMB = billion_laughs()
MANY_ALIASES = "base: &b 1\nmany: [" + ", ".join(["*b"] * 101) + "]\n"
DEEP = "[" * 70 + "]" * 70

BOUNDS = {
    "bomb in params": (BASE + "params:\n" + indented(BOMB, 2), "expand to more than"),
    "bomb in inline subset params": (
        BASE + "subsets:\n  - name: laugh\n    params:\n" + indented(BOMB, 6),
        "expand to more than",
    ),
    "bomb as the whole document": (BOMB, "expand to more than"),
    "many aliases": (BASE + "params:\n" + indented(MANY_ALIASES, 2), "more than 100 YAML aliases"),
    "recursive alias": (BASE + "params:\n  loop: &loop [*loop]\n", "refers to a node that contains it"),
    "deep nesting": (BASE + f"params:\n  deep: {DEEP}\n", "nested more than 64 levels"),
    "deep block nesting": (
        BASE
        + "params:\n"
        + "".join(" " * (2 * i + 2) + f"k{i}:\n" for i in range(80))
        + " " * 162
        + "x: 1\n",
        "nested more than 64 levels",
    ),
    "many values without aliases": (
        BASE + "params:\n  v: [" + ",".join(["0"] * 100_001) + "]\n",
        "more than 100000 values",
    ),
    "integer of 5000 digits": (BASE + "params:\n  big: " + "9" * 5000 + "\n", "invalid YAML value"),
    "python tag": (BASE + "params:\n  x: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
}


@pytest.mark.parametrize("case", sorted(BOUNDS))
def test_yaml_bounds_in_descriptor(case: str, tmp_path: Path):
    text, pattern = BOUNDS[case]
    path = use_case(tmp_path / "uc", text)
    started = time.perf_counter()
    with deadline(5), pytest.raises(DescriptorError, match=pattern) as err:
        load_descriptor(path)
    if case != "many values without aliases":  # that one is composed by libyaml first: not a bomb
        assert time.perf_counter() - started < 0.5
    assert str(path) in str(err.value)
    with deadline(5):
        validate(path)


@pytest.mark.parametrize("case", ["bomb in params", "many aliases", "recursive alias", "deep nesting"])
def test_yaml_bounds_in_subset_file(case: str, tmp_path: Path):
    text, pattern = BOUNDS[case]
    path = use_case(tmp_path / "uc")
    subset = path.parent / "subsets" / "laugh.yaml"
    subset.parent.mkdir()
    subset.write_text("where: label = 1\n" + text.removeprefix(BASE))
    started = time.perf_counter()
    with deadline(5), pytest.raises(DescriptorError, match=pattern) as err:
        load_subsets(load_descriptor(path))
    assert time.perf_counter() - started < 0.5
    assert str(subset) in str(err.value)
    with deadline(5):
        validate(path)


def test_yaml_bounds_through_parse_descriptor(tmp_path: Path):
    with deadline(5), pytest.raises(DescriptorError, match="expand to more than"):
        parse_descriptor(BASE + "params:\n" + indented(BOMB, 2), tmp_path / "descriptor.yaml")
    with pytest.raises(DescriptorError, match="too large"):
        parse_descriptor(BASE + "# " + "x" * MAX_FILE_BYTES + "\n", tmp_path / "descriptor.yaml")


def test_oversized_files_are_refused(tmp_path: Path):
    path = use_case(tmp_path / "uc", BASE + "# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(DescriptorError, match=r"descriptor too large .*at most 1048576"):
        load_descriptor(path)
    validate(path)
    use_case(path.parent)
    subset = path.parent / "subsets" / "huge.yaml"
    subset.parent.mkdir()
    subset.write_text("where: label = 1\n# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(DescriptorError, match="subset too large") as err:
        load_subsets(load_descriptor(path))
    assert str(subset) in str(err.value)


def test_a_subset_file_that_is_not_a_regular_file(tmp_path: Path):
    """A named pipe (or a device) would be read without end, or block the sensor for ever."""
    path = use_case(tmp_path / "uc")
    (path.parent / "subsets").mkdir()
    os.mkfifo(path.parent / "subsets" / "pipe.yaml")
    with deadline(5), pytest.raises(DescriptorError, match="not a regular file"):
        load_subsets(load_descriptor(path))
    validate(path)


def test_ordinary_anchors_still_work(tmp_path: Path):
    """A few anchors and merge keys (DRY subsets) stay allowed."""
    text = BASE + (
        "params:\n  window: &w {start: '2024-01-01', stop: '2024-01-02'}\n  again: *w\n"
        "subsets:\n"
        "  - &first {name: one, where: 'label = 1', params: {region: *w}}\n"
        "  - {<<: *first, name: two}\n"
    )
    desc = load_descriptor(use_case(tmp_path / "uc", text))
    assert desc.spec.params["again"] == {"start": "2024-01-01", "stop": "2024-01-02"}
    assert [s.spec.name for s in load_subsets(desc)] == ["one", "two"]


# --- 3. Numbers ------------------------------------------------------------------------------------

NUMBERS = {
    "part_rows 1e100 (a string in YAML 1.1)": ("storage: {part_rows: 1e100}", "storage.part_rows"),
    "part_rows 1.0e+100": ("storage: {part_rows: 1.0e+100}", "storage.part_rows"),
    "part_rows huge int": ("storage: {part_rows: " + "9" * 60 + "}", "storage.part_rows"),
    "part_rows negative": ("storage: {part_rows: -64}", "storage.part_rows"),
    "part_rows nan": ("storage: {part_rows: .nan}", "storage.part_rows"),
    "part_rows inf": ("storage: {part_rows: .inf}", "storage.part_rows"),
    "part_rows fraction": ("storage: {part_rows: 64.5}", "storage.part_rows"),
    "interval huge": ("check: {interval_seconds: " + "9" * 40 + "}", "source.url.check.interval_seconds"),
    "interval negative": ("check: {interval_seconds: -1}", "source.url.check.interval_seconds"),
    "interval nan": ("check: {interval_seconds: .nan}", "source.url.check.interval_seconds"),
    "storage option inf": ("storage_options: {block_size: .inf}", "source.url.storage_options"),
    "sample n huge": ("subsets: [{name: s, sample: {n: " + "9" * 30 + "}}]", "subsets.0.sample.n"),
    "sample n negative": ("subsets: [{name: s, sample: {n: -3}}]", "subsets.0.sample.n"),
    "sample fraction nan": ("subsets: [{name: s, sample: {fraction: .nan}}]", "subsets.0.sample.fraction"),
    "sample fraction inf": ("subsets: [{name: s, sample: {fraction: .inf}}]", "subsets.0.sample.fraction"),
    "sample seed huge": (
        "subsets: [{name: s, sample: {n: 3, seed: " + "9" * 30 + "}}]",
        "subsets.0.sample.seed",
    ),
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_numbers_out_of_range(case: str, tmp_path: Path):
    line, field = NUMBERS[case]
    if line.startswith(("check", "storage_options")):
        text = HEADER + LOCAL_SOURCE + f"  {line}\n" + PIPELINE
    else:
        text = BASE + line + "\n"
    path = use_case(tmp_path / "uc", text)
    with pytest.raises(DescriptorError, match=f"field '{field}'") as err:
        load_descriptor(path)
    assert str(path) in str(err.value)
    validate(path)


def test_numbers_in_a_subset_file(tmp_path: Path):
    path = use_case(tmp_path / "uc")
    subset = path.parent / "subsets" / "big.yaml"
    subset.parent.mkdir()
    subset.write_text("sample: {n: " + "9" * 30 + ", seed: -" + "9" * 30 + "}\n")
    with pytest.raises(DescriptorError, match=r"field 'sample.n'.*field 'sample.seed'") as err:
        load_subsets(load_descriptor(path))
    assert str(subset) in str(err.value)


# --- 4. Pipeline path ------------------------------------------------------------------------------


def canary_module(canary: Path) -> str:
    """A pipeline module whose import leaves a file behind: proof that it was imported."""
    return f"from pathlib import Path\n\nPath({str(canary)!r}).write_text('imported')\n" + PIPELINE_CODE


@pytest.mark.parametrize(
    "how", ["dotdot", "dotdot one level", "absolute", "symlinked file", "symlinked folder"]
)
def test_pipeline_outside_the_use_case_is_never_imported(how: str, tmp_path: Path):
    canary = tmp_path / "imported"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "outside.py").write_text(canary_module(canary))
    folder = tmp_path / "use_cases" / "shared"
    pipeline = {
        "dotdot": "../../outside/outside.py",
        "dotdot one level": "../outside.py",
        "absolute": str(outside / "outside.py"),
        "symlinked file": "pipeline.py",
        "symlinked folder": "lib/outside.py",
    }[how]
    path = use_case(folder, HEADER + LOCAL_SOURCE + f"pipeline: {pipeline}:build\n")
    (tmp_path / "use_cases" / "outside.py").write_text(canary_module(canary))
    if how == "symlinked file":
        (folder / "pipeline.py").unlink()
        (folder / "pipeline.py").symlink_to(outside / "outside.py")
    if how == "symlinked folder":
        (folder / "lib").symlink_to(outside)
    with pytest.raises(DescriptorError, match="field 'pipeline'") as err:
        load_descriptor(path).load_pipeline()
    assert str(path) in str(err.value)
    validate(path)
    with pytest.raises(DescriptorError, match="field 'pipeline'"):
        discover_descriptors(tmp_path / "use_cases")
    assert not canary.exists()


def test_multi_stage_pipeline_in_the_use_case_folder(tmp_path: Path):
    """Stages of a multi-stage use case share the use case's pipeline (``../pipeline.py``); a stage
    reaching out of the use case, or a single-stage use case reaching into a sibling, is refused."""
    root = tmp_path / "use_cases"
    staged = root / "staged"
    staged.mkdir(parents=True)
    (staged / "pipeline.py").write_text("def first(source):\n    pass\ndef second(source):\n    pass\n")
    for stage, func in (("one", "first"), ("two", "second")):
        text = BASE.replace("name: hostile", f"name: staged_{stage}").replace(
            PIPELINE, f"pipeline: ../pipeline.py:{func}\n"
        )
        use_case(staged / stage, text)
        (staged / stage / "pipeline.py").unlink()
    found = discover_descriptors(root)
    assert {d.name: d.pipeline_file() for d in found} == {
        "staged_one": (staged / "pipeline.py").resolve(),
        "staged_two": (staged / "pipeline.py").resolve(),
    }
    assert callable(load_descriptor(staged / "one").load_pipeline())  # found alone, as the CLI does

    canary = tmp_path / "imported"
    (tmp_path / "outside.py").write_text(canary_module(canary))
    escape = BASE.replace("name: hostile", "name: staged_three").replace(
        PIPELINE, "pipeline: ../../../outside.py:build\n"
    )
    path = use_case(staged / "three", escape)
    with pytest.raises(DescriptorError, match="field 'pipeline'.*outside the use case"):
        load_descriptor(path)
    validate(path)
    path.unlink()

    # A single-stage use case beside it may not import the staged one's pipeline when discovered.
    sibling = BASE.replace("name: hostile", "name: sibling").replace(
        PIPELINE, "pipeline: ../staged/pipeline.py:first\n"
    )
    use_case(root / "sibling", sibling)
    with pytest.raises(DescriptorError, match="field 'pipeline'.*outside the use case"):
        discover_descriptors(root)
    assert not canary.exists()


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_dockerfile_outside_the_use_case(how: str, tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    dockerfile = "../../Dockerfile" if how == "dotdot" else str(tmp_path / "Dockerfile")
    text = BASE + f"environment:\n  image: hostile:1\n  dockerfile: {dockerfile}\n"
    path = use_case(tmp_path / "use_cases" / "uc", text)
    with pytest.raises(DescriptorError, match="field 'environment.dockerfile'"):
        load_descriptor(path)
    validate(path)


def test_subset_file_linked_out_of_the_use_case(tmp_path: Path):
    secret = tmp_path / "credentials.yaml"
    secret.write_text(f"aws_secret_access_key: {SECRET}\n")
    path = use_case(tmp_path / "use_cases" / "uc")
    (path.parent / "subsets").mkdir()
    (path.parent / "subsets" / "leak.yaml").symlink_to(secret)
    with pytest.raises(DescriptorError, match="field 'subsets'.*outside the use case") as err:
        load_subsets(load_descriptor(path))
    assert SECRET not in validate(path) and SECRET not in str(err.value)


@pytest.mark.parametrize(
    "files", ["../../etc/passwd", "/etc/passwd", "~/.aws/credentials", "a/../../b", "--x"]
)
def test_source_files_stay_inside_the_source(files: str, tmp_path: Path):
    text = HEADER + LOCAL_SOURCE + f"  files: [{files!r}]\n" + PIPELINE
    path = use_case(tmp_path / "uc", text)
    with pytest.raises(DescriptorError, match="field 'source.url.files.0'"):
        load_descriptor(path)
    validate(path)


IMPORT_FAILURES = {
    "raises": ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    "exits": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "missing dependency": ("import no_such_module_anywhere\n", "ModuleNotFoundError: No module named"),
    "syntax": ("def build(:\n", "SyntaxError"),
    "multi-line message": ("raise ValueError('first line\\nsecond line')\n", "ValueError: first line$"),
}


@pytest.mark.parametrize("case", sorted(IMPORT_FAILURES))
def test_pipeline_that_fails_at_import(case: str, tmp_path: Path):
    code, pattern = IMPORT_FAILURES[case]
    path = use_case(tmp_path / "uc", pipeline=code)
    with pytest.raises(PipelineError, match=pattern) as err:
        load_descriptor(path).load_pipeline()
    message = str(err.value)
    assert str(path) in message and str(path.parent / "pipeline.py") in message and "\n" not in message
    output = validate(path)
    assert pattern.removesuffix("$") in output


# --- 5. Credentials --------------------------------------------------------------------------------

CREDENTIAL_KEYS = [
    "token", "access_token", "refresh_token", "id_token", "sas_token", "sas", "passwd", "pwd", "password",
    "secret", "client_secret", "key", "account_key", "private_key", "api_key", "apikey", "session",
    "session_token", "connection_string", "conn_str", "auth", "authorization", "credential", "credentials",
    "cookie", "bearer", "signature", "security_token", "AWS_SECRET_ACCESS_KEY", "accountKey", "sasToken",
    "Api-Key", "client-secret", "pass", "oauth",
]  # fmt: skip


def storage_options(options: str) -> str:
    return (
        HEADER
        + "source:\n  kind: url\n  url: gs://bucket/data\n"
        + f"  storage_options: {options}\n"
        + PIPELINE
    )


@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
def test_credential_storage_options_are_refused(key: str, tmp_path: Path):
    path = use_case(tmp_path / "uc", storage_options(f"{{{key}: {SECRET}}}"))
    with pytest.raises(
        DescriptorError, match=r"field 'source.url.storage_options'.*look like credentials.*environment"
    ) as err:
        load_descriptor(path)
    assert key in str(err.value) and SECRET not in str(err.value)
    assert SECRET not in validate(path)


@pytest.mark.parametrize(
    "options",
    [
        "{token: anon}",
        "{token: google_default}",
        "{token: cloud}",
        "{token: browser}",
        "{token: false}",
        "{token: null}",
        "{token: 'False'}",
        "{Token: ANON}",
        "{anon: true, requester_pays: true, project: my-project, endpoint_url: 'https://minio.example:9000'}",
        "{account_name: public, default_block_size: 1048576, use_ssl: true}",
    ],
)
def test_non_credential_storage_options_are_kept(options: str, tmp_path: Path):
    desc = load_descriptor(use_case(tmp_path / "uc", storage_options(options)))
    assert desc.spec.source.storage_options  # type: ignore[union-attr]


def with_source(flow: str) -> str:
    return HEADER + f"source: {flow}\n" + PIPELINE


URL_CREDENTIALS = {
    "url source": (
        with_source(f"{{kind: url, url: 'https://bob:{SECRET}@data.example.org/d'}}"),
        "source.url.url",
    ),
    "storage option value": (
        storage_options(f"{{endpoint_url: 'https://bob:{SECRET}@minio:9000'}}"),
        "source.url.storage_options",
    ),
    "git repo": (
        with_source(f"{{kind: git, repo: 'https://bob:{SECRET}@git.example.org/r.git'}}"),
        "source.git.repo",
    ),
    "git repo with a token as user": (
        with_source("{kind: git, repo: 'https://ghp_abcdefghijklmnopqrstu@github.com/o/r.git'}"),
        "source.git.repo",
    ),
    "ssh repo with a password": (
        with_source(f"{{kind: git, repo: 'ssh://git:{SECRET}@host/r.git'}}"),
        "source.git.repo",
    ),
    "croissant url": (
        with_source(f"{{kind: croissant, url: 'https://u:{SECRET}@host/croissant.json'}}"),
        "source.croissant.url",
    ),
    "hub endpoint": (
        with_source(f"{{kind: huggingface, repo: a/b, endpoint: 'https://u:{SECRET}@hub.local'}}"),
        "source.huggingface.endpoint",
    ),
    "home page": (BASE + f"url: 'https://u:{SECRET}@example.org/'\n", "url"),
    "presigned query": (
        with_source(f"{{kind: url, url: 'https://acct.blob.core.windows.net/c?sv=2022&sig={SECRET}'}}"),
        "source.url.url",
    ),
    "s3 key with a slash in its secret": (
        with_source(f"{{kind: url, url: 's3://AKIAEXAMPLE:{SECRET}/rXU+tn@bucket/data'}}"),
        "source.url.url",
    ),
    "percent-encoded signature": (
        with_source(f"{{kind: url, url: 'https://h.example/c?sv=1&sig={SECRET}%2Bx%3D'}}"),
        "source.url.url",
    ),
    "aws presigned query": (
        with_source(
            f"{{kind: url, url: 'https://b.s3.amazonaws.com/k?X-Amz-Signature={SECRET}&X-Amz-Expires=60'}}"
        ),
        "source.url.url",
    ),
}


@pytest.mark.parametrize("case", sorted(URL_CREDENTIALS))
def test_urls_with_credentials_are_refused_and_redacted(case: str, tmp_path: Path):
    text, field = URL_CREDENTIALS[case]
    path = use_case(tmp_path / "uc", text)
    with pytest.raises(DescriptorError, match=f"field '{field}'.*credentials.*environment") as err:
        load_descriptor(path)
    message = str(err.value)
    assert "***" in message and SECRET not in message and "ghp_abc" not in message
    output = validate(path)
    assert SECRET not in output and "ghp_abc" not in output


@pytest.mark.parametrize(
    "source",
    [
        "{kind: git, repo: 'ssh://git@github.com/o/r.git'}",
        "{kind: git, repo: 'git@github.com:o/r.git'}",
        "{kind: git, repo: 'https://github.com/o/r.git', ref: refs/tags/v1.2}",
        "{kind: url, url: 'https://example.org/data.csv?download=true'}",
        "{kind: huggingface, repo: a/b, revision: refs/convert/parquet}",
    ],
)
def test_urls_without_credentials_are_kept(source: str, tmp_path: Path):
    load_descriptor(use_case(tmp_path / "uc", with_source(source)))


# --- 6. Git source arguments -----------------------------------------------------------------------


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real local Git repository with one commit on main."""
    repo = tmp_path / "upstream"
    ident = ["-c", "user.name=Upstream", "-c", "user.email=up@example.org"]
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(repo)], check=True)
    (repo / "table.csv").write_text("a\n1\n")
    subprocess.run(["git", "-C", str(repo), "add", "table.csv"], check=True)
    subprocess.run(["git", "-C", str(repo), *ident, "commit", "--quiet", "-m", "data"], check=True)
    return repo


def hostile_git(repo: Path, canary: Path) -> dict[str, tuple[str, str]]:
    """(repo, ref) pairs that each once ran ``touch canary`` (or would) through git's command line."""
    payload = f"--upload-pack=touch {canary}"
    return {
        "ref is an option": (str(repo), payload),
        "repo is an option (with :// so it stays unresolved)": (f"{payload};x://", "main"),
        "repo is an option, ref the repository": (f"{payload}; git-upload-pack", str(repo)),
        "ref is a short option": (str(repo), "-c"),
        "ext transport runs a command": (f"ext::sh -c touch% {canary}", "main"),
        "ref with a newline": (str(repo), "main\n--upload-pack=touch"),
        "ref is a refspec": (str(repo), "main:refs/heads/evil"),
    }


HOSTILE_GIT_CASES = sorted(hostile_git(Path("r"), Path("c")))


@pytest.mark.parametrize("case", HOSTILE_GIT_CASES)
def test_hostile_git_source_is_refused_at_validate(case: str, tmp_path: Path, git_repo: Path):
    canary = tmp_path / "pwned"
    repo, ref = hostile_git(git_repo, canary)[case]
    # JSON strings are YAML double-quoted scalars: a newline in the ref stays one.
    text = HEADER + f"source:\n  kind: git\n  repo: {json.dumps(repo)}\n  ref: {json.dumps(ref)}\n" + PIPELINE
    path = use_case(tmp_path / "uc", text)
    with pytest.raises(DescriptorError, match=r"field 'source.git.(repo|ref)'"):
        load_descriptor(path)
    validate(path)
    assert not canary.exists()


@pytest.mark.parametrize("case", HOSTILE_GIT_CASES)
def test_hostile_git_source_is_refused_by_the_checker(case: str, tmp_path: Path, git_repo: Path):
    """Defence in depth: a source built without the descriptor model never reaches git as options."""
    canary = tmp_path / "pwned"
    repo, ref = hostile_git(git_repo, canary)[case]
    source = Source(kind="git", uri=repo, base=repo, options={"ref": ref})
    with pytest.raises(CoralordError):
        fingerprint(source, timeout=10)
    assert not canary.exists()


def test_the_payload_is_live(tmp_path: Path, git_repo: Path):
    """Control: without ``--`` and the checks, git runs the command, so the tests above test something."""
    canary = tmp_path / "pwned"
    subprocess.run(
        ["git", "ls-remote", f"--upload-pack=touch {canary};x://", str(git_repo)], capture_output=True
    )
    assert canary.exists()


def test_git_checker_still_follows_a_ref(tmp_path: Path, git_repo: Path):
    head = subprocess.run(
        ["git", "-C", str(git_repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    source = Source(kind="git", uri=str(git_repo), base=str(git_repo), options={"ref": "main"})
    assert fingerprint(source, timeout=10).details["items"] == {"ref": "main", "commit": head.strip()}
    missing = Source(kind="git", uri=str(git_repo), base=str(git_repo), options={"ref": "no-such-branch"})
    with pytest.raises(SourceError, match="no ref 'no-such-branch'"):
        fingerprint(missing, timeout=10)


@pytest.mark.parametrize("case", HOSTILE_GIT_CASES)
def test_hostile_git_source_is_refused_by_the_checkout(case: str, tmp_path: Path, git_repo: Path):
    """The publish path: ``git_checkout`` (``git clone`` / ``git fetch``) never runs a value as a command
    (a refspec ref only names a branch in the cache's own clone)."""
    canary = tmp_path / "pwned"
    repo, ref = hostile_git(git_repo, canary)[case]
    if repo.startswith("-") or ref.startswith("-"):
        with pytest.raises(SourceError, match="may not start with '-'"):
            git_checkout(repo, ref, cache=tmp_path / "cache")
    else:
        with contextlib.suppress(SourceError):
            git_checkout(repo, ref, cache=tmp_path / "cache")
    assert not canary.exists()
