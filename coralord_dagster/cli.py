"""The ``coralord`` command line (a stable contract: scripts and CI depend on it).

Exit codes: 0 success; 1 a check found a problem (verify, diff) or stored data is corrupt or missing;
2 usage or input error; 3 storage or the registry's remote unreachable after retries; 4 an internal
error. Every failure prints one line ``coralord: error: …`` naming what is wrong, never a traceback
(``CORALORD_DEBUG=1`` shows it). ``--json`` output is machine-readable and stable.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from coralord_dagster.client import open_dataset
from coralord_dagster.descriptor import discover_descriptors, load_descriptor
from coralord_dagster.diff import diff_versions
from coralord_dagster.errors import CoralordError
from coralord_dagster.garbage import DEFAULT_GRACE_S, collect
from coralord_dagster.naming import Ref
from coralord_dagster.redact import redact_url
from coralord_dagster.status import status
from coralord_dagster.subsets import check_subset_predicates
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"coralord: error: {message}", err=True)
    sys.exit(code)


def _one_line(text: str) -> str:
    return redact_url(" / ".join(line.strip() for line in text.splitlines() if line.strip()))


def handle_errors(func: F) -> F:
    """Every failure becomes one line and an exit code (see the module docstring), never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CoralordError as e:
            _fail(_one_line(str(e)) or type(e).__name__, e.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug: say so in one line, keep the traceback for who asks
            if os.environ.get("CORALORD_DEBUG"):
                traceback.print_exc()
            _fail(
                f"internal error {type(e).__name__}: {_one_line(str(e))[:500]} (set CORALORD_DEBUG=1 for the "
                "traceback, and report it)",
                4,
            )

    return wrapper  # type: ignore[return-value]


def _workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(ctx.obj["registry"])


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--registry",
    metavar="PATH|GIT_URL",
    envvar="CORALORD_REGISTRY",
    help="Registry to use (default ./.coralord/registry).",
)
@click.pass_context
def cli(ctx: click.Context, registry: str | None) -> None:
    """coralord: software-defined, versioned ML datasets."""
    ctx.obj = {"registry": registry}


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Datasets and subsets with their latest version."""
    ws = _workspace(ctx)
    rows: list[dict[str, Any]] = []
    for name in ws.registry.datasets():
        info = ws.registry.versions(name)[0]
        m = ws.registry.manifest(info)
        parent = m.parent
        rows.append(
            {
                "name": name,
                "version": str(info.version),
                "tag": info.tag,
                "rows": m.rows,
                "bytes": m.total_bytes,
                "content_id": m.content_id,
                "created": info.date,
                "parent": parent.label if parent else None,
            }
        )
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"no datasets in {ws.registry.path}")
        return
    width = max(24, *(len(r["name"]) for r in rows))
    header = f"{'NAME':<{width}} {'VERSION':<9} {'ROWS':>10} {'CONTENT':<12} {'PUBLISHED':<25} PARENT"
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r['name']:<{width}} v{r['version']:<8} {r['rows']:>10} {r['content_id'][:12]:<12} "
            f"{r['created']:<25} {r['parent'] or ''}".rstrip()
        )


@cli.command("log")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def log_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Versions of a dataset, newest first."""
    ws = _workspace(ctx)
    ref = Ref.parse(name)
    versions = ws.registry.versions(ref.name)
    if not versions:
        ws.registry.resolve(ref)  # raises "not in the registry" with a hint
    rows: list[dict[str, Any]] = []
    for info in versions:
        m = ws.registry.manifest(info)
        rows.append(
            {
                "version": str(info.version),
                "tag": info.tag,
                "commit": info.commit,
                "created": info.date,
                "rows": m.rows,
                "bytes": m.total_bytes,
                "content_id": m.content_id,
                "bump": m.bump,
                "code_version": m.code_version,
            }
        )
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(
            f"v{r['version']:<8} {r['created']}  {r['rows']:>10} rows  {r['bump'] or '':<5}  "
            f"content {r['content_id'][:12]}  commit {r['commit'][:10]}"
        )


@cli.command("show")
@click.argument("ref")
@click.pass_context
@handle_errors
def show_cmd(ctx: click.Context, ref: str) -> None:
    """Print the Croissant JSON-LD of NAME[@REV]."""
    ds = open_dataset(ref, workspace=_workspace(ctx))
    click.echo(ds.croissant_text, nl=False)


@cli.command("get")
@click.argument("ref")
@click.option("--subset", help="A published subset of the dataset (NAME/SUBSET).")
@click.option("--columns", help="Comma-separated columns to fetch.")
@click.option("--where", help="SQL predicate over the columns, e.g. \"label = 2 AND split = 'train'\".")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Output file (default NAME-vX.Y.Z.EXT)."
)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.pass_context
@handle_errors
def get_cmd(
    ctx: click.Context,
    ref: str,
    subset: str | None,
    columns: str | None,
    where: str | None,
    output: str | None,
    fmt: str,
) -> None:
    """Fetch NAME[@REV] (or a subset, some columns, some rows) into one file.

    Only what is asked for is read from storage; whole parts are checked against their sha256.
    """
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    ds = open_dataset(ref, subset=subset, columns=cols, where=where, workspace=_workspace(ctx))
    out = Path(output or f"{ds.name.replace('/', '-')}-v{ds.version}.{fmt}")
    ds.write(out, fmt=fmt)
    r = ds.last_read
    source = (
        "local storage"
        if ds.workspace.store.is_local
        else f"{r.bytes_from_storage} bytes read from storage, "
        f"{r.parts_from_cache}/{r.parts_read} part(s) from cache"
    )
    click.echo(f"{ds.name} v{ds.version} -> {out} ({source})", err=True)


@cli.command("status")
@click.argument("use_cases", type=click.Path(exists=True, file_okay=False), default="use_cases")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def status_cmd(ctx: click.Context, use_cases: str, as_json: bool) -> None:
    """Whether each dataset and subset declared under USE_CASES is current, and why not.

    A dataset is stale when its source or code differ from what its latest version was built from; a
    subset when its parent has a newer version or its definition changed. Sources are checked now.
    """
    rows = status(_workspace(ctx), discover_descriptors(use_cases))
    if as_json:
        _echo_json([r.to_json() for r in rows])
        return
    width = max([len(r.name) for r in rows] + [4])
    click.echo(f"{'NAME':<{width}} {'VERSION':<9} {'STATE':<8} WHY")
    for r in rows:
        version = f"v{r.version}" if r.version else "-"
        click.echo(f"{r.name:<{width}} {version:<9} {r.state:<8} {'; '.join(r.reasons)}")


@cli.command("export")
@click.argument("ref")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--subset", help="A published subset of the dataset (NAME/SUBSET).")
@click.pass_context
@handle_errors
def export_cmd(ctx: click.Context, ref: str, dest: str, subset: str | None) -> None:
    """Write NAME[@REV] to DEST as its Croissant and parts, for any Croissant reader.

    DEST/croissant.json is the version's Croissant with every part beside it
    (``parts/<split>/<n>-<sha256>.parquet``, each checked against its sha256 when fetched): mlcroissant,
    TFDS's CroissantBuilder or any Parquet reader use DEST offline, on any machine.
    """
    ds = open_dataset(ref, subset=subset, workspace=_workspace(ctx))
    path = ds.local_copy(dest)
    click.echo(f"{ds.name} v{ds.version} -> {path} ({len(ds.manifest.parts)} part(s))", err=True)
    click.echo(str(path))


@cli.command("verify")
@click.argument("ref")
@click.option("--fast", is_flag=True, help="Check sizes only, not sha256.")
@click.pass_context
@handle_errors
def verify_cmd(ctx: click.Context, ref: str, fast: bool) -> None:
    """Check every part of NAME[@REV]; exit 1 on a mismatch."""
    ds = open_dataset(ref, workspace=_workspace(ctx))
    problems = ds.verify(fast=fast)
    for p in problems:
        click.echo(f"FAIL {ds.name} v{ds.version}: {p}")
    if problems:
        sys.exit(1)
    how = "sizes" if fast else "sha256"
    click.echo(f"OK {ds.name} v{ds.version}: {len(ds.manifest.parts)} part(s) verified ({how})")


@cli.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--key", "keys", multiple=True, help="Key column identifying a row (repeat for several).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=1000, show_default=True, help="At most this many keys listed per kind.")
@click.pass_context
@handle_errors
def diff_cmd(
    ctx: click.Context, ref_a: str, ref_b: str, keys: tuple[str, ...], as_json: bool, limit: int
) -> None:
    """Schema changes and rows added/removed/changed from NAME@A to NAME@B.

    Exit code 0 when the versions hold the same data, 1 when they differ (like diff(1)).
    """
    ws = _workspace(ctx)
    a = open_dataset(ref_a, workspace=ws)
    b = open_dataset(ref_b if "@" in ref_b else f"{a.name}@{ref_b}", workspace=ws)
    d = diff_versions(a, b, list(keys), limit=limit)
    if as_json:
        _echo_json(d.to_json())
    else:
        click.echo(f"{d.a} -> {d.b}: {d.summary()}")
        click.echo(
            f"rows {d.rows_a} -> {d.rows_b}; parts shared {d.parts_shared}, compared {d.parts_compared}"
        )
        for kind in ("added", "removed", "changed"):
            listed = getattr(d, f"keys_{kind}")
            if listed:
                click.echo(f"{kind}: {', '.join(str(k) for k in listed)}")
    sys.exit(0 if d.identical else 1)


@cli.command("gc")
@click.option("--dry-run", is_flag=True, help="Only list the parts that would be deleted.")
@click.option(
    "--grace",
    default=DEFAULT_GRACE_S,
    show_default=True,
    help="Keep unreferenced parts younger than this many seconds (a publish may be under way).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def gc_cmd(ctx: click.Context, dry_run: bool, grace: int, as_json: bool) -> None:
    """Delete stored parts that no tagged version references."""
    report = collect(_workspace(ctx), dry_run=dry_run, grace_s=grace)
    if as_json:
        _echo_json(report.to_json())
        return
    verb = "would delete" if dry_run else "deleted"
    for sha, size in report.unreferenced:
        click.echo(f"{verb} {sha} ({size} bytes)")
    for path, size in report.temporaries:
        click.echo(f"{verb} temporary {path} ({size} bytes)")
    click.echo(
        f"{verb} {len(report.unreferenced)} part(s), {report.bytes} bytes, and {len(report.temporaries)} "
        f"temporary file(s); kept {report.referenced} referenced and {report.too_young} younger than "
        f"{grace} s"
    )


@cli.command("search")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def search_cmd(ctx: click.Context, text: str, as_json: bool) -> None:
    """Datasets whose name, description, field names or tags contain TEXT."""
    ws = _workspace(ctx)
    if not ws.catalog.path.exists():
        ws.catalog.rebuild(ws.registry)  # the catalog is derived: build it on first use
    hits = ws.catalog.search(text)
    if as_json:
        _echo_json(hits)
        return
    for h in hits:
        click.echo(f"{h['name']:<32} v{h['latest_version']:<8} matched {', '.join(h['matched'])}")
    if not hits:
        click.echo(f"nothing matches {text!r}")


@cli.command("validate")
@click.argument("descriptor", type=click.Path())
@handle_errors
def validate_cmd(descriptor: str) -> None:
    """Check a descriptor file, its subsets and that its pipeline imports, without running anything."""
    desc = load_descriptor(descriptor)
    subsets = check_subset_predicates(desc)
    desc.load_pipeline()
    click.echo(
        f"OK {desc.path}: dataset {desc.name}, {len(subsets)} subset(s), code version {desc.code_version()}"
    )


@cli.command("publish")
@click.argument("descriptor", type=click.Path())
@click.pass_context
@handle_errors
def publish_cmd(ctx: click.Context, descriptor: str) -> None:
    """Build a descriptor's dataset and publish it, without Dagster."""
    desc = load_descriptor(descriptor)
    desc.load_pipeline()
    ws = Workspace.open(ctx.obj["registry"], create=True)
    result = publish_descriptor(desc, ws)
    click.echo(f"{result.name}: {result.summary} [{result.tag}]")


@cli.group("catalog")
def catalog_group() -> None:
    """The DuckDB catalog (a derived index of the registry)."""


@catalog_group.command("rebuild")
@click.pass_context
@handle_errors
def catalog_rebuild(ctx: click.Context) -> None:
    """Recreate the catalog from the registry's history."""
    ws = _workspace(ctx)
    n = ws.catalog.rebuild(ws.registry)
    click.echo(f"catalog {ws.catalog.path}: {n} version(s) indexed")


def main() -> None:
    cli(prog_name="coralord")


if __name__ == "__main__":
    main()
