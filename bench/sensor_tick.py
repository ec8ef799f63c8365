"""One tick of the coralord_sources sensor over many HTTP sources on a local server.

Generates N datasets (default 1,000) whose sources are files on a threaded HTTP server on 127.0.0.1,
then times sensor evaluations against a real (temporary) Dagster instance: the first tick (every
source checked, ETags collected) and a second tick (conditional requests: every source answers 304).
Run: ``python bench/sensor_tick.py [N]``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
from scratch import scratch_dir  # bench/ is on sys.path when a script runs

DESCRIPTOR = """name: {name}
description: Bench dataset {i}.
license: CC0-1.0
source:
  kind: url
  url: {url}
  files: [data/{i}.csv]
  check: {{interval_seconds: 1}}
pipeline: ../pipeline.py:build
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connections are reused across sources

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        etag = '"' + hashlib.md5(self.path.encode()).hexdigest() + '"'
        self.send_response(304 if self.headers.get("If-None-Match") == etag else 200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(port_file: str) -> None:
    """The upstream server, in its own process (as a real upstream would be)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    port_file = scratch_dir() / "port"
    upstream = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port_file.read_text()}"
    root = scratch_dir("coralord-sensor-bench-")
    (root / "use_cases").mkdir()
    # The sensor never runs pipelines; it only needs one to exist for the code version.
    (root / "use_cases" / "pipeline.py").write_text("def build(source):\n    return None\n")
    for i in range(n):
        folder = root / "use_cases" / f"ds{i}"
        folder.mkdir()
        (folder / "descriptor.yaml").write_text(DESCRIPTOR.format(name=f"ds{i}", i=i, url=url))

    from coralord_dagster.descriptor import discover_descriptors
    from coralord_dagster.orchestration.resource import CoralordResource
    from coralord_dagster.orchestration.sources import sources_sensor

    descriptors = discover_descriptors(root / "use_cases")
    sensor = sources_sensor(descriptors)
    resource = CoralordResource(registry=str(root / "registry"))
    resource.workspace()
    with dg.instance_for_test() as instance:
        cursor = None
        for label in ("first tick (all sources new)", "second tick (conditional: 304s)"):
            time.sleep(1.1)  # every source is due again (interval 1 s)
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"coralord": resource})
            t0 = time.perf_counter()
            result = sensor(ctx)
            elapsed = time.perf_counter() - t0
            cursor = result.cursor
            print(
                f"{label:<34}: {n} sources in {elapsed:.2f} s (goal <= 2 s); "
                f"{len(result.run_requests)} run request(s), {len(result.asset_events)} observation(s)"
            )
    upstream.terminate()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    else:
        main()
