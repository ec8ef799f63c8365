"""A separate Python environment with TensorFlow Datasets, for tests that build our Croissant with its
``CroissantBuilder``: TFDS does not declare two of the packages it needs (``importlib_resources``,
``apache-beam``), and apache-beam caps pyarrow below the release coralord uses, so TFDS cannot share the
test environment. Made once per machine (under the cache folder, keyed by its requirements) and reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = [
    "tensorflow-datasets==4.9.10",
    "importlib_resources",
    "apache-beam",
    "array_record",
    "mlcroissant==1.1.1",
    "pillow",
]


def tfds_python() -> Path | str:
    """The interpreter of the TFDS environment (made if missing), or why it cannot be made here."""
    key = hashlib.sha256("\n".join([sys.version, *REQUIREMENTS]).encode()).hexdigest()[:12]
    root = Path(os.environ.get("CORALORD_TEST_ENVS") or Path.home() / ".cache" / "coralord-tests")
    venv = root / f"tfds-{key}"
    python = venv / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"tfds-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time; the others wait and reuse it
        if (venv / "ready").exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if proc.returncode != 0:
            return f"cannot install TFDS ({proc.stderr.strip().splitlines()[-1:]})"
        (venv / "ready").write_text("\n".join(REQUIREMENTS))
    return python
