"""The Dagster UI, in headless Chromium, shows the dataset's version, Croissant and source checks."""

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from .conftest import BIN, REPO, free_port
from .helpers import dagster_dev, graphql, run_ok, unavailable, wait_for_http
from .test_e2e import env_for, fresh_checkout, run_main_job

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# As root and offline: no sandbox, and none of Chromium's own network chatter.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (CI installs it; on a root Debian machine the tests install it too)."""
    if not Path(CHROMIUM).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=False, capture_output=True
        )
    if not Path(CHROMIUM).exists():
        unavailable("needs Debian's chromium (apt-get install chromium); CI installs it")
    return CHROMIUM


def show_page(page: Any, base: str, path: str, texts: Sequence[str], shot: Path, wait_s: float = 60) -> str:
    """Load a page until it shows every text (the UI fills in asynchronously), screenshot it to
    ``shot`` and return its text; fails naming what is missing."""
    end = time.time() + wait_s
    while True:
        page.goto(base + path, wait_until="networkidle")
        if page.get_by_role("button", name="Skip").count():
            page.get_by_role("button", name="Skip").click()  # the community dialog
        body = page.inner_text("body")
        if all(t in body for t in texts) or time.time() > end:
            page.screenshot(path=str(shot), full_page=True)
            missing = [t for t in texts if t not in body]
            assert not missing, f"{path} does not show {missing}"
            return str(body)
        time.sleep(2)


def test_ui_shows_version_croissant_and_source_checks(chromium: str, tmp_path: Path, fmnist_source: Path):
    from playwright.sync_api import sync_playwright

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        CORALORD_REGISTRY=str(tmp_path / "reg"),
        CORALORD_SOURCE__FASHION_MNIST=str(fmnist_source),
        CORALORD_CACHE=str(tmp_path / "cache"),
    )
    run_ok(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "definitions", "--select", "fashion_mnist"],
        cwd=REPO,
        env=env,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with dagster_dev(REPO / "workspace.yaml", cwd=REPO, env=env, port=port), sync_playwright() as pw:
        wait_for_http(base + "/server_info", timeout=90)
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def show(path: str, *texts: str) -> str:
            return show_page(page, base, path, texts, tmp_path / f"{path.strip('/').replace('/', '_')}.png")

        body = show(
            "/assets/fashion_mnist",
            "coralord/version",
            "v1.0.0",
            "fashion_mnist-v1.0.0",
            "coralord/croissant",
            "coralord/status",
            "The article class",
        )
        assert "published fashion_mnist v1.0.0" in body
        # The sources sensor observes the source on its own: when it was checked and what it found.
        show("/assets/fashion_mnist/source", "coralord/checked_at", "coralord/fingerprint", "coralord/status")
        browser.close()


def artifacts_dir(tmp_path: Path) -> Path:
    """Where the UI tests save their screenshots: ``$TEST_ARTIFACTS_DIR`` (CI sets it), else the
    test's own temporary folder."""
    root = os.environ.get("TEST_ARTIFACTS_DIR")
    path = Path(root) / "ui" if root else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


STALENESS = """{ assetNodes { assetKey { path } isObservable staleStatus
  staleCauses { reason category key { path } } } }"""
REACHABLE = """query($path: [String!]!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: "reachable", limit: 1) {
    status evaluation { success description } } }"""


def test_ui_after_the_main_job_nothing_is_unsynced_subsets_are_found_and_a_failing_source_shows(
    chromium: str, tmp_path: Path
):
    """The README's main job, then dagster dev in the same folder with one source gone: no asset is
    Unsynced, a subset is found by its name and its page shows its definition and parent version, and
    the failing source shows a failed check with the reason while its dataset keeps its version."""
    from playwright.sync_api import sync_playwright

    checkout = fresh_checkout(tmp_path)
    env = env_for(tmp_path)
    env.pop("DAGSTER_HOME")  # the main job's own instance, under .coralord/, shown by dagster dev after
    run_main_job(checkout, env)
    home = checkout / ".coralord"
    fixtures = home / "fixtures"
    env.update(
        DAGSTER_HOME=str(home / "dagster"),
        CORALORD_SOURCE__FASHION_MNIST=str(fixtures / "fashion_mnist"),
        CORALORD_SOURCE__ERA5_MODEL_LEVEL_WIND=str(fixtures / "era5_model_level_wind"),
        CORALORD_SOURCE__WINE_QUALITY_RAW=str(tmp_path / "gone"),  # the upstream went away
    )
    shots = artifacts_dir(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with dagster_dev(checkout / "workspace.yaml", cwd=checkout, env=env, port=port) as proc:
        wait_for_http(base + "/server_info", timeout=120, proc=proc)
        # The sources sensor's first tick checks every source: wait until the gone one is recorded.
        deadline = time.time() + 180
        while True:
            try:
                runs = graphql(base, REACHABLE, path=["wine_quality_raw", "source"])["assetCheckExecutions"]
            except OSError:
                runs = []
            if runs and runs[0]["evaluation"] is not None:
                break
            assert time.time() < deadline and proc.poll() is None, "the sources sensor never checked"
            time.sleep(1)
        [failed] = runs
        assert failed["evaluation"]["success"] is False
        assert "gone" in failed["evaluation"]["description"]
        # Observed sources agree with what each version was built from: nothing is Unsynced.
        nodes = graphql(base, STALENESS)["assetNodes"]
        stale = {
            "/".join(n["assetKey"]["path"]): n["staleCauses"] for n in nodes if n["staleStatus"] != "FRESH"
        }
        assert not stale, stale
        assert {"fashion_mnist/pullover", "wine_quality/red"} <= {
            "/".join(n["assetKey"]["path"]) for n in nodes
        }

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            def show(path: str, *texts: str, shot: str) -> str:
                return show_page(page, base, path, texts, shots / f"{shot}.png")

            catalog = show("/assets?view=flat", "fashion_mnist / pullover", shot="catalog")
            assert "Unsynced" not in catalog
            lineage = show("/assets/fashion_mnist?view=lineage", "pullover", shot="lineage_fashion_mnist")
            assert "Unsynced" not in lineage

            # Search by the subset's name finds it (from a page that does not show it).
            runs_page = show("/runs", "Runs", shot="before_search")
            assert "pullover" not in runs_page
            page.keyboard.press("/")
            page.keyboard.type("pullover")
            page.get_by_text(re.compile(r"fashion_mnist\s*/\s*pullover")).first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "search_pullover.png"))

            # Its page: the definition (the file's fields) and the parent version it was built from.
            subset = show(
                "/assets/fashion_mnist/pullover",
                "Pullovers only",
                "label = 2",
                "coralord/parent",
                "fashion_mnist v1.0.0",
                shot="subset_pullover",
            )
            assert "Unsynced" not in subset

            # The failing source: its reachable check failed with the reason; its dataset keeps v1.0.0.
            show("/assets/wine_quality_raw/source?view=checks", "reachable", "gone", shot="failing_source")
            dataset = show(
                "/assets/wine_quality_raw", "v1.0.0", "wine_quality_raw-v1.0.0", shot="its_dataset"
            )
            assert "Unsynced" not in dataset
            browser.close()
