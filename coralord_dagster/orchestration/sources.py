"""Self-updating datasets: watch each dataset's source and code, rematerialize on change.

Every dataset has an observable source asset ``[dataset, "source"]`` whose data version is the
source's fingerprint. The ``coralord_sources`` sensor (running by default) checks the sources that are
due (per-source cadence from the descriptor: ``check.interval_seconds`` or ``check.cron``),
concurrently, records an observation for each (when it was checked, what changed, or why the check
failed) and requests a run of the dataset when its fingerprint or its code version (descriptor +
pipeline source, read from disk) differs from what was last published. A failing source is reported
and retried on the next tick; it never blocks the others and never publishes anything. Run keys are
derived from the fingerprint and code version, so a restarted sensor never runs the same change twice.
Identical content still publishes nothing: the run reports "unchanged".
"""

import json
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from croniter import croniter

from coralord_dagster.descriptor import CheckPolicy, LoadedDescriptor, load_descriptor
from coralord_dagster.errors import CoralordError
from coralord_dagster.model import Manifest
from coralord_dagster.naming import asset_key_path
from coralord_dagster.orchestration.reload import reload_tags
from coralord_dagster.orchestration.resource import CoralordResource
from coralord_dagster.sources import Fingerprint, SourceError, check_many, fingerprint, resolve_source
from coralord_dagster.status import dataset_reasons

SENSOR_INTERVAL_S = 10
DATA_VERSION_TAG = "dagster/data_version"
#: The check on a source asset that fails, with the reason, while the source cannot be checked.
REACHABLE = "reachable"


def source_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey([*asset_key_path(dataset), "source"])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


def is_due(policy: CheckPolicy, last_checked: float | None, now: float) -> bool:
    """Whether a source should be checked now, given when it was last checked (successfully or not)."""
    if last_checked is None:
        return True
    if policy.cron:
        start = datetime.fromtimestamp(last_checked, tz=UTC)
        return float(croniter(policy.cron, start).get_next(float)) <= now  # the first tick after the check
    return now - last_checked >= policy.interval_seconds


def source_asset(desc: LoadedDescriptor) -> dg.SourceAsset:
    """The observable source asset of a dataset (observe it by hand in the UI, too)."""
    source = resolve_source(desc)

    def _source(context: dg.AssetExecutionContext) -> dg.ObserveResult:
        try:
            fp = fingerprint(resolve_source(load_descriptor(desc.path, use_case=desc.use_case)))
        except (SourceError, CoralordError) as e:
            # Observed by hand and failed: recorded as a failed observation, not a traceback; the
            # source keeps its last known data version, so its dataset does not look out of date.
            context.log.warning(f"{desc.name}: source check failed: {e}")
            return dg.ObserveResult(
                data_version=last_data_version(context.instance, desc.name),
                metadata=failed_metadata(str(e), time.time()),
            )
        return dg.ObserveResult(
            data_version=dg.DataVersion(fp.value), metadata=observation_metadata(fp, None)
        )

    # Observable source assets are beta in Dagster 1.13: said once here, not on every load and command.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset")
        return dg.observable_source_asset(
            key=source_key(desc.name),
            group_name=desc.group,
            description=f"Upstream source of {desc.name}: {source.uri} ({source.kind}).",
            metadata={"coralord/source": source.uri, "coralord/kind": source.kind},
        )(_source)


def failed_metadata(error: str, now: float) -> dict[str, Any]:
    return {
        "coralord/checked_at": _iso(now),
        "coralord/error": error,
        "coralord/status": "check failed; the last version is kept; checking again at its cadence",
    }


def observed_fingerprint(instance: dg.DagsterInstance, dataset: str) -> str | None:
    """The source fingerprint (data version) of the latest observation of ``dataset``'s source that
    has one (None if none)."""
    record = instance.get_latest_data_version_record(source_key(dataset), is_source=True)
    observation = record.asset_observation if record is not None else None
    return (observation.tags or {}).get(DATA_VERSION_TAG) if observation is not None else None


def last_data_version(instance: dg.DagsterInstance, dataset: str) -> dg.DataVersion | None:
    value = observed_fingerprint(instance, dataset)
    return dg.DataVersion(value) if value else None


def reachable_check(desc: LoadedDescriptor) -> dg.AssetChecksDefinition:
    """``reachable`` on the source asset: failed, with the reason, while the source cannot be checked.

    The sources sensor records its outcome at every check (at the descriptor's cadence); running it
    by hand checks the source now.
    """

    @dg.asset_check(
        asset=source_key(desc.name),
        name=REACHABLE,
        description="The source can be read and fingerprinted (the sources sensor checks at its cadence).",
    )
    def _reachable() -> dg.AssetCheckResult:
        try:
            fingerprint(resolve_source(load_descriptor(desc.path, use_case=desc.use_case)))
        except (SourceError, CoralordError) as e:
            return dg.AssetCheckResult(passed=False, description=str(e), metadata={"coralord/error": str(e)})
        return dg.AssetCheckResult(passed=True, description="the source was checked")

    return _reachable


def reachable_evaluation(dataset: str, error: str | None) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=source_key(dataset),
        check_name=REACHABLE,
        passed=error is None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=error or "the source was checked",
        metadata={"coralord/error": error} if error else {},
    )


def observation_metadata(fp: Fingerprint, previous: Fingerprint | None) -> dict[str, Any]:
    return {
        "coralord/checked_at": _iso(fp.checked_at),
        "coralord/fingerprint": fp.value,
        "coralord/changes": dg.MetadataValue.json(fp.changes_from(previous)),
        "coralord/details": dg.MetadataValue.json(fp.details.get("items", {})),
    }


class _Published:
    """What is published, read from the registry at most once per tick (one listing of its tags)."""

    def __init__(self, coralord: CoralordResource) -> None:
        self.coralord = coralord
        self._latest: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._latest is None:
            self.ws = self.coralord.workspace()
            self._latest = {}
            for v in self.ws.registry.all_versions():
                if v.name not in self._latest or v.version > self._latest[v.name].version:
                    self._latest[v.name] = v
        return self._latest

    def upstream(self, name: str) -> Fingerprint | SourceError:
        """The fingerprint of an upstream dataset: its latest version's content id."""
        latest = self._load().get(name)
        if latest is None:
            return SourceError(f"upstream dataset {name} has no version yet")
        content_id = self.ws.registry.manifest(latest).content_id
        return Fingerprint(content_id, {"items": {name: f"v{latest.version} {content_id[:12]}"}})

    def manifest(self, name: str) -> Manifest | None:
        """The manifest of the latest published version (None if none)."""
        latest = self._load().get(name)
        return self.ws.registry.manifest(latest) if latest is not None else None


def sources_sensor(
    descriptors: Sequence[LoadedDescriptor],
    clock: Callable[[], float] = time.time,
    name: str = "coralord_sources",
    job: Any = None,  # the job define_asset_job returns
) -> dg.SensorDefinition:
    """Checks due sources and code, and requests a dataset run when either changed.

    ``clock`` (seconds since the epoch) decides which sources are due; tests pass their own. ``job``:
    the datasets job its runs belong to (each run selects the datasets that changed).
    """

    loaded_code = {d.name: d.code_version() for d in descriptors}  # what the code location shows

    @dg.sensor(
        name=name,
        **(
            {"job": job}
            if job is not None
            else {"asset_selection": [dg.AssetKey(asset_key_path(d.name)) for d in descriptors]}
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        description="Checks each dataset's upstream source and code; rebuilds the dataset when they change.",
    )
    def _sensor(context: dg.SensorEvaluationContext, coralord: CoralordResource) -> dg.SensorResult:
        state: dict[str, dict[str, Any]] = json.loads(context.cursor) if context.cursor else {}
        now = clock()
        due, notes = [], []
        for desc in descriptors:
            try:
                fresh = load_descriptor(
                    desc.path, use_case=desc.use_case
                )  # descriptor edits count without a reload
                entry = state.get(desc.name, {})
                source = resolve_source(fresh)
                # A stage's input is a registry read: checked on every tick, whatever the cadence.
                if source.kind == "dataset" or is_due(fresh.spec.source.check, entry.get("checked"), now):
                    due.append((fresh, source, Fingerprint.from_json(entry.get("fingerprint"))))
            except CoralordError as e:
                notes.append(f"{desc.name}: {e}")
        published = _Published(coralord)
        results: dict[str, Fingerprint | SourceError] = check_many(
            [(d.name, s, p) for d, s, p in due if s.kind != "dataset"]
        )
        for desc, source, _previous in due:
            if source.kind == "dataset":  # a stage: its source is the upstream's latest version
                results[desc.name] = published.upstream(source.options["dataset"])
        events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
        runs: list[dg.RunRequest] = []
        for desc, source, previous in due:
            result = results[desc.name]
            entry = state.setdefault(desc.name, {})
            if source.kind == "dataset" and isinstance(result, SourceError):
                notes.append(f"{desc.name}: {result}")  # not published upstream yet: nothing to do
                continue
            if isinstance(result, SourceError):
                # Checked (and failed): the next check comes at the descriptor's cadence, not on every
                # tick, so a source that is down records one failure per check. The last version stays.
                entry.update(error=str(result), checked=now)
                notes.append(f"{desc.name}: check failed, checking again at its cadence: {result}")
                last = observed_fingerprint(context.instance, desc.name)
                events += [
                    dg.AssetObservation(
                        asset_key=source_key(desc.name),
                        metadata=failed_metadata(str(result), now),
                        # The last known data version stays: the dataset is not out of date for it.
                        tags={DATA_VERSION_TAG: last} if last else None,
                    ),
                    reachable_evaluation(desc.name, str(result)),
                ]
                continue
            try:
                code = desc.code_version()
                reasons = _reasons(published, desc.name, result, previous, code, entry.get("code"))
                if reasons and source.kind == "dataset" and _automated(context, published, desc, code):
                    context.log.info(
                        f"{desc.name}: its upstream changed in a Dagster run; automation rebuilds it"
                    )
                    reasons = []
            except CoralordError as e:
                notes.append(f"{desc.name}: {e}")
                continue
            entry.update(fingerprint=result.to_json(), code=code, checked=now, error=None)
            metadata = observation_metadata(result, previous)
            metadata["coralord/status"] = "; ".join(reasons) if reasons else "unchanged"
            metadata["coralord/changed"] = bool(reasons)  # i.e. the dataset is being rebuilt
            if source.kind != "dataset":  # a stage has no source asset: its upstream is an asset
                events += [
                    dg.AssetObservation(
                        asset_key=source_key(desc.name),
                        metadata=metadata,
                        tags={DATA_VERSION_TAG: result.value},
                    ),
                    reachable_evaluation(desc.name, None),
                ]
            if reasons:
                context.log.info(f"{desc.name}: {'; '.join(reasons)}")
                tags = {"coralord/reason": "; ".join(reasons)[:250]}
                if code != loaded_code.get(desc.name):
                    tags.update(reload_tags(context, desc.name))  # coralord_reload reloads it once built
                runs.append(
                    dg.RunRequest(
                        run_key=f"{desc.name}@{result.value[:16]}@{code}",
                        asset_selection=[dg.AssetKey(asset_key_path(desc.name))],
                        tags=tags,
                    )
                )
        for note in notes:
            context.log.warning(note)
        skip = None
        if not runs:
            skip = "; ".join(notes) or (
                f"checked {len(due)} source(s): unchanged" if due else "no source due"
            )
        return dg.SensorResult(
            run_requests=runs, asset_events=events, cursor=json.dumps(state, sort_keys=True), skip_reason=skip
        )

    return _sensor


def _automated(
    context: dg.SensorEvaluationContext, published: _Published, stage: LoadedDescriptor, code: str
) -> bool:
    """Whether a stage's rebuild is the automation condition's to request: its code is what it was
    last built with, and its upstream's latest version was built by a run of this Dagster instance
    (a version published elsewhere, e.g. by ``coralord publish``, has no data version here to follow)."""
    latest = published.manifest(stage.name)
    upstream = published.manifest(resolve_source(stage).options["dataset"])
    if latest is None or latest.code_version != code or upstream is None or not upstream.run_id:
        return False
    return context.instance.get_run_by_id(upstream.run_id) is not None


def _reasons(
    published: _Published,
    name: str,
    fp: Fingerprint,
    previous: Fingerprint | None,
    code: str,
    previous_code: str | None,
) -> list[str]:
    """Why the dataset must be rebuilt; empty when its source and code are what was last built."""
    if previous is None:  # first check since the sensor started: compare with what is published
        return dataset_reasons(published.manifest(name), fp.value, code)
    reasons = []
    if previous.value != fp.value:
        reasons.append("source changed: " + ", ".join(fp.changes_from(previous)))
    if previous_code is not None and previous_code != code:
        reasons.append(f"code version {previous_code} -> {code}")
    return reasons
