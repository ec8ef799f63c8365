"""Runs one pipeline step inside a dataset's Docker image (started by :mod:`.docker`).

This file is mounted into the container and run there with the image's own Python. It needs only
``dagster-pipes`` and ``pyarrow`` (plus whatever the pipeline imports), never coralord or Dagster: the
container computes the table; the host process publishes it. Dagster passes the step's inputs as
Pipes extras and reads back its logs and one ``coralord/output`` message through the container's logs.
"""

import importlib.util
import inspect
import sys
import traceback
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster_pipes import PipesContext, open_dagster_pipes


class UpstreamVersion:
    """What a ``dataset`` source gives the pipeline inside the container (the host's
    ``DatasetVersion`` exported to one Parquet file)."""

    def __init__(self, name: str, version: str, path: str) -> None:
        self.name, self.version, self.path = name, version, path

    def to_arrow(self) -> pa.Table:
        return pq.read_table(self.path)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()


class LocalSource:
    """What a local ``url`` source gives the pipeline inside the container (mounted read-only at the
    same path as on the host)."""

    def __init__(self, location: str, files: list[str]) -> None:
        self.location, self.files = location, tuple(files)

    def url(self, relpath: str) -> str:
        return self.location.rstrip("/") + "/" + relpath.lstrip("/")

    def open(self, relpath: str, mode: str = "rb") -> Any:
        return open(self.url(relpath), mode)  # noqa: SIM115 - the caller closes it

    def read_parquet(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.url(relpath), columns=columns)


def _load(pipeline_file: str, function: str) -> tuple[Any, Any]:
    spec = importlib.util.spec_from_file_location("coralord_step_pipeline", pipeline_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python file: {pipeline_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module, getattr(module, function)


def run(pipes: PipesContext) -> None:
    extras = pipes.extras
    module, func = _load(extras["pipeline_file"], extras["function"])
    given = extras["input"]
    if given["kind"] == "dataset":
        source: Any = UpstreamVersion(given["name"], given["version"], given["path"])
    else:
        source = LocalSource(given["location"], given["files"])
    parameters = inspect.signature(func).parameters
    kwargs: dict[str, Any] = {}
    if "params" in parameters:
        model = getattr(module, "Params", None)
        kwargs["params"] = model.model_validate(extras["params"]) if model is not None else extras["params"]
    if "context" in parameters:
        kwargs["context"] = pipes  # inside the container the context is the Pipes context (log, extras)
    pipes.log.info(f"running {extras['function']} in the container, Python {sys.version.split()[0]}")
    out = func(source, **kwargs)
    metrics: dict[str, float] = {}
    if hasattr(out, "data") and hasattr(out, "metrics"):  # a coralord Result, duck-typed
        out, metrics = out.data, dict(out.metrics)
    produced_as = "arrow"
    if not isinstance(out, pa.Table):
        out, produced_as = pa.Table.from_pandas(out), "pandas"
    pq.write_table(out, extras["output"])
    pipes.report_custom_message(
        {
            "coralord/output": extras["output"],
            "rows": out.num_rows,
            "metrics": metrics,
            "produced_as": produced_as,
        }
    )


def main() -> None:
    with open_dagster_pipes() as pipes:
        try:
            run(pipes)
        except Exception:
            pipes.log.error(traceback.format_exc())
            raise


if __name__ == "__main__":
    main()
