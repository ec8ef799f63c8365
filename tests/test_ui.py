"""The Dagster UI, in headless Chromium, shows the dataset's version, Croissant and source checks."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import BIN, REPO, free_port
from .helpers import dagster_dev, run_ok, unavailable, wait_for_http

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

        def show(path: str, *texts: str, wait_s: float = 60) -> str:
            """Load a page until it shows every text (the UI fills in asynchronously)."""
            end = time.time() + wait_s
            while True:
                page.goto(base + path, wait_until="networkidle")
                if page.get_by_role("button", name="Skip").count():
                    page.get_by_role("button", name="Skip").click()  # the community dialog
                body = page.inner_text("body")
                if all(t in body for t in texts) or time.time() > end:
                    page.screenshot(
                        path=str(tmp_path / f"{path.strip('/').replace('/', '_')}.png"), full_page=True
                    )
                    missing = [t for t in texts if t not in body]
                    assert not missing, f"{path} does not show {missing}"
                    return body
                time.sleep(2)

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
