"""Keep the code location's view equal to what its runs built.

A run can build what the loaded code location does not hold yet: pipeline code edited on disk (Dagster
would show "has a new code version" next to the version just recorded), or a subset file added to a
running deployment (published under its name, but without its lineage edge and checks). The sensors
tag such runs with :data:`RELOAD_TAG`; the ``coralord_reload`` sensor then reloads the location
through the webserver's GraphQL API — once such a run has succeeded since the location was loaded, and
only while no run is in progress, since a reload restarts the code server that runs are launched from.
Without a known webserver (``CORALORD_DAGSTER_WEBSERVER`` or the resource's ``webserver``) it says, in
its skip reason, that the location needs a reload.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import dagster as dg

from coralord_dagster.orchestration.resource import CoralordResource

#: Run tag naming the code location that has not loaded what the run builds.
RELOAD_TAG = "coralord/reload_location"
#: ... and the dataset the run builds it for (each reload sensor watches its own datasets' runs).
FOR_TAG = "coralord/reload_for"

_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def reload_tags(context: dg.SensorEvaluationContext, dataset: str) -> dict[str, str]:
    """The tags that ask for a reload of the sensor's own code location once a run built ``dataset``
    (none outside a deployment)."""
    origin = context.code_location_origin
    return {RELOAD_TAG: origin.location_name, FOR_TAG: dataset} if origin is not None else {}


def reload_sensor(datasets: list[str], name: str = "coralord_reload") -> dg.SensorDefinition:
    """Reloads the code location after a successful run tagged for one of ``datasets``."""
    loaded_at = datetime.fromtimestamp(time.time(), UTC)  # this code location's load

    @dg.sensor(
        name=name,
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reloads this code location after a run built code or subsets it has not loaded.",
    )
    def _reload(context: dg.SensorEvaluationContext, coralord: CoralordResource) -> dg.SkipReason:
        origin = context.code_location_origin
        if origin is None:
            return dg.SkipReason("not in a deployment")
        location = origin.location_name
        built = context.instance.get_run_records(
            filters=dg.RunsFilter(
                tags={RELOAD_TAG: location, FOR_TAG: datasets},
                statuses=[dg.DagsterRunStatus.SUCCESS],
                updated_after=loaded_at,
            ),
            limit=1,
        )
        if not built:
            return dg.SkipReason("the code location holds what its runs built")
        busy = context.instance.get_runs_count(filters=dg.RunsFilter(statuses=_IN_PROGRESS))
        if busy:
            return dg.SkipReason(f"a reload is due; waiting for {busy} run(s) in progress")
        url = coralord.webserver or os.environ.get("CORALORD_DAGSTER_WEBSERVER")
        if not url:
            return dg.SkipReason(
                f"code location {location!r} has not loaded what run {built[0].dagster_run.run_id} built: "
                "reload it (Deployment, Reload), or set CORALORD_DAGSTER_WEBSERVER to have it reloaded"
            )
        # After this tick returns: the reload restarts the code server evaluating this sensor.
        threading.Thread(target=_reload_location, args=(url, location), daemon=True).start()
        return dg.SkipReason(f"reloading code location {location!r} (run {built[0].dagster_run.run_id})")

    return _reload


def _reload_location(url: str, location: str) -> None:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(url)
    try:
        client = DagsterGraphQLClient(
            parts.hostname or "127.0.0.1", port_number=parts.port, use_https=parts.scheme == "https"
        )
        client.reload_repository_location(location)
    except (DagsterGraphQLClientError, OSError):
        pass  # the next tick tries again (the location still predates the run)
