"""Descriptor files: the YAML that declares a software-defined dataset.

A descriptor names the dataset, its source, the pipeline callable that turns the source into a table,
the environment it runs in and how it splits. Parsing validates everything up front so that a bad
descriptor fails with the file and field at fault before anything is written anywhere.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from coralord_dagster.errors import DescriptorError, InvalidNameError, PipelineError
from coralord_dagster.naming import validate_name

DESCRIPTOR_FILE = "descriptor.yaml"
# libyaml's loader when the wheel has it: sensors re-read every descriptor on every tick.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


SUBSETS_DIR = "subsets"


def _dataset_name(v: str) -> str:
    try:
        return validate_name(v)
    except InvalidNameError as e:
        raise ValueError(str(e)) from None


#: A dataset name, checked (with a suggestion) where a descriptor names one.
DatasetName = Annotated[str, AfterValidator(_dataset_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=_Model)


class CheckPolicy(_Model):
    """How often a deployment checks the source for changes."""

    interval_seconds: int = Field(300, ge=1, description="Check at most this often (seconds).")
    cron: str | None = Field(None, description="Check on this cron schedule instead, e.g. '0 * * * *'.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError("a cron schedule has five fields, e.g. '*/15 * * * *'")
        return v


class _SourceBase(_Model):
    check: CheckPolicy = Field(default=CheckPolicy(), description="Check cadence in a deployment.")


class HuggingFaceSource(_SourceBase):
    """A dataset repository on the Hugging Face Hub (or any server speaking its API)."""

    kind: Literal["huggingface"]
    repo: str = Field(description="Hub repository id, e.g. 'zalando-datasets/fashion_mnist'.")
    revision: str = Field("main", description="Branch, tag or commit; 'refs/convert/parquet' for Parquet.")
    files: list[str] = Field(
        default_factory=list, description="Files the pipeline reads, relative to the repo."
    )
    endpoint: str | None = Field(None, description="Hub URL; default $HF_ENDPOINT or https://huggingface.co.")


class UrlSource(_SourceBase):
    """Files under any fsspec URL: http(s)://, s3://, gs://, or a local folder or file.

    A Zarr store is a URL source too: list its consolidated metadata (``.zmetadata``) in ``files`` and
    the store's own version (its metadata and attributes) becomes the source's fingerprint.
    """

    kind: Literal["url"]
    url: str = Field(description="Base URL (or path relative to the descriptor) holding the files.")
    files: list[str] = Field(
        default_factory=list,
        description="Files (or glob patterns, locally) the pipeline reads, relative to url.",
    )
    storage_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="fsspec options for reading, e.g. {token: anon} for a public GCS bucket. Never secrets: "
        "the descriptor is committed; credentials come from the environment.",
    )

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        secret = [k for k in v if any(w in k.lower() for w in ("secret", "password", "key", "session"))]
        if secret:
            raise ValueError(
                f"{secret} look like credentials; descriptors are committed to Git, so pass credentials "
                "through the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...)"
            )
        return v


class GitSource(_SourceBase):
    """Files in a Git repository at a branch, tag or commit."""

    kind: Literal["git"]
    repo: str = Field(description="Repository URL or path.")
    ref: str = Field("HEAD", description="Branch, tag or commit to follow.")
    files: list[str] = Field(
        default_factory=list, description="Files the pipeline reads, relative to the repo."
    )


class CroissantSource(_SourceBase):
    """An upstream dataset published with a Croissant JSON-LD; its files are checked by its checksums."""

    kind: Literal["croissant"]
    url: str = Field(description="URL (or path) of the upstream croissant.json.")


class DatasetSource(_SourceBase):
    """Another dataset of the same registry: a stage of a pipeline (download → process → analyze).

    The pipeline gets the upstream version (a :class:`coralord_dagster.DatasetVersion`); the new version
    records it as its lineage, and a new upstream version rebuilds this dataset.
    """

    kind: Literal["dataset"]
    name: DatasetName = Field(description="The upstream dataset's name, e.g. 'wine_quality_raw'.")
    version: str = Field("latest", description="The upstream version to build from: 'latest' or 'X.Y.Z'.")


SOURCE_KINDS = ("huggingface", "url", "git", "croissant", "dataset")

SourceSpec = Annotated[
    HuggingFaceSource | UrlSource | GitSource | CroissantSource | DatasetSource, Field(discriminator="kind")
]


class Environment(_Model):
    """The software environment a dataset's pipeline runs in."""

    image: str | None = Field(None, description="Docker image name the pipeline runs in.")
    dockerfile: str | None = Field(None, description="Dockerfile (relative to the descriptor) building it.")


class Splits(_Model):
    """How the dataset's rows are split (train/test/...)."""

    column: str = Field("split", description="Column holding each row's split name.")
    names: list[str] = Field(min_length=1, description="The split names, e.g. [train, test].")


class ColumnInfo(_Model):
    """Documentation and semantics of one column, carried into the Croissant."""

    description: str | None = Field(None, description="What the column holds.")
    categories: list[str] | None = Field(
        None, description="Class names, indexed by the column's integer value."
    )
    semantic: Literal["image"] | None = Field(
        None, description="'image': a struct{bytes,path} of encoded images."
    )


class StorageOptions(_Model):
    """How rows are cut into parts."""

    part_rows: int | None = Field(
        None, ge=16, description="Average rows per part (rounded to a power of two); default from row size."
    )


class Sample(_Model):
    """A deterministic sample: a fraction or a number of rows, optionally per value of a column."""

    fraction: float | None = Field(None, gt=0, le=1, description="Share of rows to keep, e.g. 0.1.")
    n: int | None = Field(None, ge=1, description="Number of rows to keep.")
    per: str | None = Field(None, description="Sample within each value of this column (stratified).")
    seed: int = Field(0, description="Seed: the same seed keeps the same rows.")

    @model_validator(mode="after")
    def _one_size(self) -> Sample:
        if (self.fraction is None) == (self.n is None):
            raise ValueError("give exactly one of 'fraction' or 'n'")
        return self


class SubsetSpec(_Model):
    """A named, versioned subset of a dataset: rows, columns, a split, a sample, an order."""

    name: str = Field(description="Subset name: [a-z][a-z0-9_]{0,63}; published as '<dataset>/<name>'.")
    description: str | None = Field(None, description="What the subset is, for people.")
    where: str | None = Field(None, description="SQL predicate over the dataset's columns, e.g. 'label = 2'.")
    columns: list[str] | None = Field(None, min_length=1, description="Columns to keep (default all).")
    split: str | None = Field(None, description="Keep only this split (needs the dataset's 'splits').")
    sample: Sample | None = Field(None, description="Keep a deterministic sample of the rows.")
    order_by: list[str] | None = Field(None, description="Columns to sort by (default: the dataset's order).")
    params: dict[str, Any] | None = Field(
        None,
        description="Pipeline parameters (over the dataset's 'params'): the subset is then built by the "
        "pipeline from the source, e.g. a time window of a Zarr store, instead of filtered from the dataset.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            validate_name(v, what="subset name")
        except InvalidNameError as e:
            raise ValueError(str(e)) from None
        if "/" in v:
            raise ValueError("a subset name is one segment, without '/'")
        return v


class Descriptor(_Model):
    """A software-defined dataset."""

    name: DatasetName = Field(description="Dataset name: [a-z][a-z0-9_]{0,63}; the Dagster asset key.")
    description: str = Field(min_length=1, description="What the dataset is, for people.")
    license: str = Field(min_length=1, description="License URL or SPDX id of the published data.")
    url: str | None = Field(None, description="Home page of the dataset.")
    citation: str | None = Field(None, description="How to cite the dataset (Croissant citeAs).")
    keywords: list[str] = Field(default_factory=list, description="Search keywords.")
    source: SourceSpec = Field(description="Where the raw data comes from.")
    pipeline: str = Field(description="'file.py:function' (relative to the descriptor) or 'module:function'.")
    environment: Environment = Field(default=Environment(), description="Docker environment.")
    splits: Splits | None = Field(None, description="Split column and names, if the dataset has splits.")
    columns: dict[str, ColumnInfo] = Field(default_factory=dict, description="Per-column documentation.")
    storage: StorageOptions = Field(default=StorageOptions(), description="Part layout options.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameters passed to the pipeline (as 'params'), validated by the pipeline module's "
        "'Params' model when it has one.",
    )
    subsets: list[SubsetSpec] = Field(default_factory=list, description="Subsets (more in subsets/*.yaml).")

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, v: str) -> str:
        target, sep, func = v.rpartition(":")
        if not sep or not target or not func.isidentifier():
            raise ValueError("expected 'file.py:function' or 'package.module:function'")
        return v


class LoadedDescriptor:
    """A validated descriptor plus where it came from: its file, raw text and pipeline."""

    def __init__(self, descriptor: Descriptor, path: Path, text: str) -> None:
        self.spec = descriptor
        self.path = path
        self.text = text
        self.group: str = path.parent.name  # the use case it belongs to (set by discovery)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def folder(self) -> Path:
        return self.path.parent

    def pipeline_file(self) -> Path:
        """The source file of the pipeline callable (its hash is part of the code version)."""
        target = self.spec.pipeline.rpartition(":")[0]
        if target.endswith(".py"):
            return (self.folder / target).resolve()
        try:
            spec = importlib.util.find_spec(target)
        except ImportError as e:
            spec = None
            err: Exception | None = e
        else:
            err = None
        if spec is None or spec.origin is None:
            raise PipelineError(f"{self.path}: field 'pipeline': cannot find module {target!r} ({err})")
        return Path(spec.origin)

    def load_pipeline(self) -> Callable[..., Any]:
        """Import and return the pipeline callable."""
        target, _, func_name = self.spec.pipeline.rpartition(":")
        try:
            if target.endswith(".py"):
                file = self.pipeline_file()
                mod_name = f"coralord_pipeline_{self.name.replace('/', '__')}_{file.stem}"
                spec = importlib.util.spec_from_file_location(mod_name, file)
                if spec is None or spec.loader is None:
                    raise ImportError(f"not a Python file: {file}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
        except (ImportError, OSError, SyntaxError) as e:
            raise PipelineError(f"{self.path}: field 'pipeline': cannot import {target!r}: {e}") from e
        func = getattr(module, func_name, None)
        if not callable(func):
            raise PipelineError(f"{self.path}: field 'pipeline': {target!r} has no function {func_name!r}")
        return func

    def pipeline_params(
        self,
        overrides: dict[str, Any] | None = None,
        where: Path | None = None,
        pipeline: Callable[..., Any] | None = None,
    ) -> Any:
        """The dataset's ``params`` with ``overrides`` on top, validated by the ``Params`` model (a
        pydantic model) of the pipeline's module when it has one, else as a dict.

        ``pipeline``: the callable already loaded (so the model is the one its module holds).
        Errors name ``where`` (the descriptor or subset file) and the field.
        """
        merged = {**self.spec.params, **(overrides or {})}
        module = sys.modules.get(getattr(pipeline or self.load_pipeline(), "__module__", ""))
        model = getattr(module, "Params", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return merged
        try:
            return model.model_validate(merged)
        except ValidationError as e:
            raise DescriptorError(f"{where or self.path}: {_problems(e, 'params')}") from None

    def code_version(self) -> str:
        """Hash of the descriptor text and the pipeline's source: changes when either changes."""
        h = hashlib.sha256(self.text.encode())
        h.update(b"\0")
        h.update(self.pipeline_file().read_bytes())
        return h.hexdigest()[:16]

    def metadata_digest(self) -> str:
        """Hash of what the Croissant shows about the dataset besides its data."""
        meta = self.spec.model_dump(mode="json", exclude={"pipeline", "storage", "source", "params"})
        return hashlib.sha256(yaml.safe_dump(meta, sort_keys=True).encode()).hexdigest()[:16]


def _hint(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "missing":
        return "add it"
    if kind == "extra_forbidden":
        return "remove it or fix its spelling"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return f"set source.kind to one of: {', '.join(SOURCE_KINDS)}"
    return "fix its value"


def _parse(text: str, path: Path, model: type[M]) -> M:
    """Validate YAML ``text`` read from ``path`` as ``model``; errors name the file and the field."""
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DescriptorError(f"{path}:{where}: invalid YAML ({problem}); fix the syntax") from None
    if not isinstance(data, dict):
        raise DescriptorError(f"{path}: expected a mapping of fields (name, description, ...), got {data!r}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise DescriptorError(f"{path}: {_problems(e)}") from None


def _problems(e: ValidationError, prefix: str | None = None) -> str:
    """One clause per invalid field: ``field 'a.b': what is wrong (what to do)``."""
    problems = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
        field = ".".join([prefix, *loc] if prefix else loc)
        problems.append(f"field '{field}': {err['msg'].removeprefix('Value error, ')} ({_hint(err)})")
    return "; ".join(problems)


def parse_descriptor(text: str, path: Path | str) -> LoadedDescriptor:
    """Validate descriptor ``text`` read from ``path``; raise :class:`DescriptorError` naming the field."""
    path = Path(path)
    return LoadedDescriptor(_parse(text, path, Descriptor), path.resolve(), text)


def load_descriptor(path: Path | str) -> LoadedDescriptor:
    """Read and validate one descriptor file (or a folder holding ``descriptor.yaml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / DESCRIPTOR_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DescriptorError(f"{path}: cannot read descriptor ({e.strerror or e})") from None
    return parse_descriptor(text, path)


class LoadedSubset:
    """A validated subset definition and the text it was read from."""

    def __init__(self, dataset: str, spec: SubsetSpec, path: Path, text: str) -> None:
        self.dataset = dataset
        self.spec = spec
        self.path = path
        self.text = text

    @property
    def full_name(self) -> str:
        return f"{self.dataset}/{self.spec.name}"

    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def load_subsets(desc: LoadedDescriptor) -> list[LoadedSubset]:
    """The descriptor's inline subsets plus ``subsets/*.yaml`` beside it, read from disk now.

    A subset file's name defaults to its file name (``subsets/pullover.yaml`` → ``pullover``).
    """
    found = [
        LoadedSubset(desc.name, s, desc.path, yaml.safe_dump(s.model_dump(mode="json", exclude_none=True)))
        for s in desc.spec.subsets
    ]
    for path in sorted((desc.folder / SUBSETS_DIR).glob("*.y*ml")):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DescriptorError(f"{path}: cannot read subset ({e.strerror or e})") from None
        try:
            data = _yaml_load(text)
        except yaml.YAMLError:
            data = None  # _parse reports it with the line
        if isinstance(data, dict) and "name" not in data:
            text = f"name: {path.stem}\n{text}"
        spec = _parse(text, path, SubsetSpec)
        if spec.name != path.stem:
            raise DescriptorError(
                f"{path}: field 'name': {spec.name!r} differs from the file name (rename one)"
            )
        found.append(LoadedSubset(desc.name, spec, path.resolve(), text))
    seen: dict[str, Path] = {}
    for sub in found:
        if sub.spec.name in seen:
            raise DescriptorError(
                f"{sub.path}: subset {sub.spec.name!r} is already declared in {seen[sub.spec.name]}"
            )
        seen[sub.spec.name] = sub.path
    return found


def discover_descriptors(root: Path | str) -> list[LoadedDescriptor]:
    """All descriptors under ``root``, sorted by name: one use case per folder
    (``<use_case>/descriptor.yaml``), or one per stage of a multi-stage use case
    (``<use_case>/<stage>/descriptor.yaml``). Each descriptor's ``group`` is its use case's folder name.
    """
    root = Path(root)
    paths = sorted({*root.glob(f"*/{DESCRIPTOR_FILE}"), *root.glob(f"*/*/{DESCRIPTOR_FILE}")})
    found = []
    for p in paths:
        desc = load_descriptor(p)
        desc.group = p.relative_to(root).parts[0]
        found.append(desc)
    seen: dict[str, Path] = {}
    for d in found:
        if d.name in seen:
            raise DescriptorError(f"{d.path}: dataset name {d.name!r} is already declared in {seen[d.name]}")
        seen[d.name] = d.path
    return sorted(found, key=lambda d: d.name)


def pipeline_signature_accepts(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` takes a parameter called ``name`` (pipelines may ask for ``context``)."""
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
