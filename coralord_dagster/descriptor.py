"""Descriptor files: the YAML that declares a software-defined dataset.

A descriptor names the dataset, its source, the pipeline callable that turns the source into a table,
the environment it runs in and how it splits. Parsing validates everything up front so that a bad
descriptor fails with the file and field at fault before anything is written anywhere.

A descriptor or subset file may come from someone else's shared registry, so its content stays data:
reading is bounded (size, nesting, YAML aliases), local paths stay inside the use case, and values that
would carry credentials or reach a command line as options are refused. Every refusal is a
:class:`DescriptorError` naming the file and the field, and never echoes a secret.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from croniter import croniter
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

from coralord_dagster.checks import Checks
from coralord_dagster.errors import DescriptorError, InvalidNameError, PipelineError
from coralord_dagster.naming import validate_name
from coralord_dagster.redact import is_credential_name, masked_credentials
from coralord_dagster.yamlfile import kind_of, one_line, read_text, yaml_load

DESCRIPTOR_FILE = "descriptor.yaml"
SUBSETS_DIR = "subsets"


def _dataset_name(v: str) -> str:
    try:
        return validate_name(v)
    except InvalidNameError as e:
        raise ValueError(str(e)) from None


#: A dataset name, checked (with a suggestion) where a descriptor names one.
DatasetName = Annotated[str, AfterValidator(_dataset_name)]


# gcsfs' documented ``token`` values that name a way to authenticate rather than carry a credential.
_GCS_TOKEN_MODES = frozenset({"anon", "google_default", "cloud", "browser", "false", "none"})
_ENV_CREDENTIALS = (
    "descriptors are shared and committed to Git, so pass credentials through the environment "
    "(AWS_*, GOOGLE_APPLICATION_CREDENTIALS, a Git credential helper, ...)"
)


def _no_url_credentials(v: str | None) -> str | None:
    shown = None if v is None else masked_credentials(v)
    if shown is not None:
        raise ValueError(f"the URL holds credentials ({shown[:200]}); {_ENV_CREDENTIALS}")
    return v


#: A URL or path that carries no credentials (they would be committed, shared and published).
PublicUrl = Annotated[str, AfterValidator(_no_url_credentials)]


def _not_an_option(v: str) -> str:
    # Git and other tools read an argument that starts with '-' as an option: '--upload-pack=<cmd>'
    # runs a command.
    if v.startswith("-"):
        raise ValueError(f"{v[:40]!r} starts with '-' (a command-line option, not a name)")
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError("holds control characters (a newline, a tab, ...)")
    return v


def _relative_file(v: str) -> str:
    _not_an_option(v)
    if v.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", v) or ".." in re.split(r"[/\\]", v):
        raise ValueError(f"{v[:80]!r} is not a path inside the source (no absolute path, no '..')")
    return v


#: A file below a source's root, e.g. 'data/train.parquet' or a glob 'data/*.csv'.
SourceFile = Annotated[str, AfterValidator(_relative_file)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=_Model)


class CheckPolicy(_Model):
    """How often a deployment checks the source for changes."""

    interval_seconds: int = Field(
        300, ge=1, le=366 * 86400, description="Check at most this often (seconds, at most a year)."
    )
    cron: str | None = Field(None, description="Check on this cron schedule instead, e.g. '0 * * * *'.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and (len(v.split()) != 5 or not croniter.is_valid(v)):
            raise ValueError(f"{v[:60]!r} is not a cron schedule of five fields, e.g. '*/15 * * * *'")
        return v


class _SourceBase(_Model):
    check: CheckPolicy = Field(default=CheckPolicy(), description="Check cadence in a deployment.")


class HuggingFaceSource(_SourceBase):
    """A dataset repository on the Hugging Face Hub (or any server speaking its API)."""

    kind: Literal["huggingface"]
    repo: str = Field(description="Hub repository id, e.g. 'zalando-datasets/fashion_mnist'.")
    revision: str = Field("main", description="Branch, tag or commit; 'refs/convert/parquet' for Parquet.")
    files: list[SourceFile] = Field(
        default_factory=list, description="Files the pipeline reads, relative to the repo."
    )
    endpoint: PublicUrl | None = Field(
        None, description="Hub URL; default $HF_ENDPOINT or https://huggingface.co."
    )


class UrlSource(_SourceBase):
    """Files under any fsspec URL: http(s)://, s3://, gs://, or a local folder or file.

    A Zarr store is a URL source too: list its consolidated metadata (``.zmetadata``) in ``files`` and
    the store's own version (its metadata and attributes) becomes the source's fingerprint.
    """

    kind: Literal["url"]
    url: PublicUrl = Field(description="Base URL (or path relative to the descriptor) holding the files.")
    files: list[SourceFile] = Field(
        default_factory=list,
        description="Files (or glob patterns, locally) the pipeline reads, relative to url.",
    )
    storage_options: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description="fsspec options for reading, e.g. {token: anon} for a public GCS bucket. Never secrets: "
        "the descriptor is committed; credentials come from the environment.",
    )

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        secret = [k for k, value in v.items() if is_credential_name(k) and not _names_gcs_mode(k, value)]
        if secret:
            raise ValueError(f"{secret} look like credentials; {_ENV_CREDENTIALS}")
        for k, value in v.items():
            shown = masked_credentials(value) if isinstance(value, str) else None
            if shown is not None:
                raise ValueError(f"{k!r} holds credentials ({shown[:200]}); {_ENV_CREDENTIALS}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{k!r} is not a finite number")
        return v


def _names_gcs_mode(key: str, value: Any) -> bool:
    """gcsfs' ``token`` set to a way of authenticating (``anon``, ``google_default``, ...), not a token."""
    if key.lower() != "token":
        return False
    return value is None or value is False or (isinstance(value, str) and value.lower() in _GCS_TOKEN_MODES)


# git check-ref-format's rules that matter here: no '..', '@{', space, '~^:?*[\\' or control characters.
_BAD_REF = re.compile(r"\.\.|@\{|[\s~^:?*\[\\]|//|\.lock$|/$|\.$")
# '<transport>::<address>' makes git run a remote helper; 'ext::' runs any command.
_REMOTE_HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")


class GitSource(_SourceBase):
    """Files in a Git repository at a branch, tag or commit."""

    kind: Literal["git"]
    repo: PublicUrl = Field(description="Repository URL or path.")
    ref: str = Field("HEAD", min_length=1, description="Branch, tag or commit to follow.")
    files: list[SourceFile] = Field(
        default_factory=list, description="Files the pipeline reads, relative to the repo."
    )

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        _not_an_option(v)
        if _REMOTE_HELPER.match(v):
            raise ValueError(f"{v.split('::')[0]!r}:: runs a Git remote helper; give a URL or a path")
        return v

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        _not_an_option(v)
        if _BAD_REF.search(v):
            raise ValueError(f"{v[:80]!r} is not a branch, tag or commit name")
        return v


class CroissantSource(_SourceBase):
    """An upstream dataset published with a Croissant JSON-LD; its files are checked by its checksums."""

    kind: Literal["croissant"]
    url: PublicUrl = Field(description="URL (or path) of the upstream croissant.json.")


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

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile(cls, v: str | None) -> str | None:
        if v is not None and (os.path.isabs(v) or v.startswith("~")):
            raise ValueError("give the Dockerfile relative to the descriptor, inside the use case")
        return v


SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class Splits(_Model):
    """How the dataset's rows are split (train/test/...)."""

    column: str = Field("split", description="Column holding each row's split name.")
    names: list[str] = Field(min_length=1, description="The split names, e.g. [train, test].")

    @field_validator("names")
    @classmethod
    def _path_safe(cls, v: list[str]) -> list[str]:
        # A split name is a folder of the version's parts (``parts/<split>/…``) and a Croissant regex.
        bad = [n for n in v if not SPLIT_NAME.fullmatch(n)]
        if bad:
            raise ValueError(
                f"split names {bad} are not plain names: use letters, digits, '_' and '-' (e.g. train)"
            )
        if len(set(v)) != len(v):
            raise ValueError(f"split names {v} repeat a name")
        return v


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
        None,
        ge=16,
        le=1 << 40,
        description="Average rows per part (rounded to a power of two); default from row size.",
    )


_INT64_MAX = (1 << 63) - 1  # the SQL engine's BIGINT


class Sample(_Model):
    """A deterministic sample: a fraction or a number of rows, optionally per value of a column."""

    fraction: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="Share of rows to keep, e.g. 0.1."
    )
    n: int | None = Field(None, ge=1, le=_INT64_MAX, description="Number of rows to keep.")
    per: str | None = Field(None, description="Sample within each value of this column (stratified).")
    seed: int = Field(
        0,
        ge=-_INT64_MAX - 1,
        le=_INT64_MAX,
        description="Seed (a 64-bit integer): the same seed keeps the same rows.",
    )

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
    checks: Checks | None = Field(
        None, description="Quality checks each subset version must pass (default: none)."
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


class Freshness(_Model):
    """How old the latest version may get before Dagster warns, then fails, its freshness."""

    fail_after_hours: float = Field(gt=0, le=24 * 366, description="Fail when older than this.")
    warn_after_hours: float | None = Field(None, gt=0, description="Warn when older than this.")

    @model_validator(mode="after")
    def _ordered(self) -> Freshness:
        if self.warn_after_hours is not None and self.warn_after_hours >= self.fail_after_hours:
            raise ValueError("warn_after_hours must be below fail_after_hours")
        return self


_OWNER = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|team:[A-Za-z0-9_.-]{1,63}")
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,63}")


class Descriptor(_Model):
    """A software-defined dataset."""

    name: DatasetName = Field(description="Dataset name: [a-z][a-z0-9_]{0,63}; the Dagster asset key.")
    description: str = Field(min_length=1, description="What the dataset is, for people.")
    license: str = Field(min_length=1, description="License URL or SPDX id of the published data.")
    url: PublicUrl | None = Field(None, description="Home page of the dataset.")
    citation: str | None = Field(None, description="How to cite the dataset (Croissant citeAs).")
    keywords: list[str] = Field(default_factory=list, description="Search keywords.")
    creator: str | None = Field(None, description="Who made the dataset (Croissant creator): a name.")
    publisher: str | None = Field(
        None, description="Who publishes it (Croissant publisher); default: the creator."
    )
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
    key: list[str] | None = Field(
        None, min_length=1, description="Columns identifying a row: diffs are by key, and it must be unique."
    )
    checks: Checks = Field(
        default=Checks(), description="Quality checks a version must pass before it is published."
    )
    owners: list[str] = Field(
        default_factory=list, description="Who owns the dataset: emails or 'team:<name>' (Dagster owners)."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Dagster asset tags, e.g. {domain: vision}."
    )
    freshness: Freshness | None = Field(None, description="Dagster freshness policy of the latest version.")

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if not _OWNER.fullmatch(o)]
        if bad:
            raise ValueError(f"owners {bad} are neither emails nor 'team:<name>'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}: {t}" for k, t in v.items() if not (_TAG.fullmatch(k) and _TAG.fullmatch(t))]
        if bad:
            raise ValueError(f"tags {bad}: keys and values are 1-63 letters, digits, '_', '-' or '.'")
        return v

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, v: str) -> str:
        target, sep, func = v.rpartition(":")
        if not sep or not target or not func.isidentifier():
            raise ValueError("expected 'file.py:function' or 'package.module:function'")
        if target.endswith(".py") and (os.path.isabs(target) or target.startswith("~")):
            raise ValueError("give the pipeline file relative to the descriptor, inside the use case")
        if not target.endswith(".py") and not all(p.isidentifier() for p in target.split(".")):
            raise ValueError(f"{target!r} is neither a .py file nor a module name")
        return v


class LoadedDescriptor:
    """A validated descriptor plus where it came from: its file, raw text and pipeline.

    ``use_case``: the folder its local files (pipeline, Dockerfile, subsets) must lie in. Discovery
    knows it; otherwise it is the descriptor's folder, or for a stage of a multi-stage use case (see
    :func:`discover_descriptors`) the use case's folder above it.
    """

    def __init__(self, descriptor: Descriptor, path: Path, text: str, use_case: Path | None = None) -> None:
        self.spec = descriptor
        self.path = path
        self.text = text
        self.group: str = path.parent.name  # the use case it belongs to (set by discovery)
        self._use_case = use_case.resolve() if use_case is not None else None
        self._pipeline_file: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def use_case(self) -> Path:
        if self._use_case is None:
            self._use_case = _use_case_folder(self.path)
        return self._use_case

    def local_file(self, relpath: str, field: str) -> Path:
        """``relpath`` (relative to the descriptor) resolved, links followed; a
        :class:`DescriptorError` naming ``field`` when it lies outside the use case."""
        path = (self.folder / relpath).resolve()
        # The descriptor's own folder needs no look around; only a reach upwards asks for the use case.
        if not (path.is_relative_to(self.folder) or path.is_relative_to(self.use_case)):
            raise DescriptorError(
                f"{self.path}: field '{field}': {relpath!r} lies outside the use case folder {self.use_case} "
                "(a path with '..' or a link out of it); keep the file inside the use case"
            )
        return path

    def pipeline_file(self) -> Path:
        """The source file of the pipeline callable (its hash is part of the code version)."""
        target = self.spec.pipeline.rpartition(":")[0]
        if target.endswith(".py"):
            if self._pipeline_file is None:  # checked once, when the descriptor is read
                self._pipeline_file = self.local_file(target, "pipeline")
            return self._pipeline_file
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
        file = self.pipeline_file() if target.endswith(".py") else None  # refused before any import
        mod_name = ""
        try:
            if file is not None:
                mod_name = f"coralord_pipeline_{self.name.replace('/', '__')}_{file.stem}"
                spec = importlib.util.spec_from_file_location(mod_name, file)
                if spec is None or spec.loader is None:
                    raise ImportError(f"not a Python file: {file}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
        # Whatever the module raises while it is imported (SystemExit too) is the pipeline's fault: one
        # line naming the file and the exception, not a traceback through our code.
        except (Exception, SystemExit) as e:
            sys.modules.pop(mod_name, None)
            where = f"{target!r} ({file})" if file is not None else repr(target)
            raise PipelineError(
                f"{self.path}: field 'pipeline': cannot import {where}: {type(e).__name__}: {one_line(e)}"
            ) from e
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
        # What the Croissant shows: not how the data is made or who is paged about it.
        operational = {"pipeline", "storage", "source", "params", "owners", "tags", "freshness"}
        meta = self.spec.model_dump(mode="json", exclude=operational)
        for late in ("creator", "publisher", "key"):  # fields added later: absent, digests stay as they were
            if meta.get(late) is None:
                meta.pop(late, None)
        if not self.spec.checks.declared:
            meta.pop("checks", None)
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


def _validate(data: Any, path: Path, model: type[M]) -> M:
    """Validate parsed YAML ``data`` read from ``path`` as ``model``; errors name the file and the field."""
    if not isinstance(data, dict):
        raise DescriptorError(
            f"{path}: expected a mapping of fields (name, description, ...), got {kind_of(data)}"
        )
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


def parse_descriptor(text: str, path: Path | str, use_case: Path | None = None) -> LoadedDescriptor:
    """Validate descriptor ``text`` read from ``path``; raise :class:`DescriptorError` naming the field.

    Its local files (a ``file.py`` pipeline, the Dockerfile) must lie inside ``use_case`` (default: see
    :class:`LoadedDescriptor`); nothing is imported here.
    """
    path = Path(path)
    spec = _validate(yaml_load(text, path), path, Descriptor)
    desc = LoadedDescriptor(spec, path.resolve(), text, use_case)
    if use_case is not None and not desc.path.is_relative_to(desc.use_case):
        raise DescriptorError(f"{path}: links to {desc.path}, outside its use case folder {desc.use_case}")
    if spec.pipeline.rpartition(":")[0].endswith(".py"):
        desc.pipeline_file()
    if spec.environment.dockerfile:
        desc.local_file(spec.environment.dockerfile, "environment.dockerfile")
    return desc


def load_descriptor(path: Path | str, use_case: Path | None = None) -> LoadedDescriptor:
    """Read and validate one descriptor file (or a folder holding ``descriptor.yaml``).

    ``use_case``: the folder its local files must lie in, when the caller knows it (discovery does).
    """
    path = Path(path)
    if path.is_dir():
        path = path / DESCRIPTOR_FILE
    return parse_descriptor(read_text(path, "descriptor"), path, use_case)


def _use_case_folder(descriptor: Path) -> Path:
    """The use case of a descriptor found alone: its folder, or the folder above when that is a
    multi-stage use case (it holds no descriptor itself, and another stage folder beside this one does).

    Only asked when a descriptor reaches upwards (``../pipeline.py``), so a plain one costs no listing.
    """
    folder = descriptor.parent
    parent = folder.parent
    if parent == folder or (parent / DESCRIPTOR_FILE).exists():
        return folder
    try:
        stages = any(p != folder and (p / DESCRIPTOR_FILE).is_file() for p in parent.iterdir())
    except OSError:
        stages = False
    return parent if stages else folder


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
    folder = desc.folder / SUBSETS_DIR
    linked = folder.is_symlink()
    for path in sorted(folder.glob("*.y*ml")):
        if linked or path.is_symlink():  # one lstat; only a link needs resolving
            desc.local_file(str(path.relative_to(desc.folder)), "subsets")  # no link out of the use case
        text = read_text(path, "subset")
        data = yaml_load(text, path)
        if isinstance(data, dict) and "name" not in data:
            text = f"name: {path.stem}\n{text}"
            data = {"name": path.stem, **data}
        spec = _validate(data, path, SubsetSpec)
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
        group = p.relative_to(root).parts[0]
        desc = load_descriptor(p, use_case=root / group)
        desc.group = group
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
