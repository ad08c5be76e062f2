"""Debian packages that end-to-end tests need (Chromium, PostgreSQL), installed on first use.

The machine has no browser or database server until a project installs them, and CI starts from a
clean machine, so a session fixture installs what is missing (``apt-get``, as root) instead of a step
a person must remember. Nothing is downloaded from anywhere but Debian's package registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

_UPDATED = False


def ensure_debian_packages(packages: list[str], *, provides: list[str]) -> None:
    """Install ``packages`` unless every path in ``provides`` exists; a failure names the packages."""
    global _UPDATED
    if all(Path(p).exists() for p in provides):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"need Debian packages {packages} (for {provides}); install them with "
            f"`apt-get install -y {' '.join(packages)}` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _UPDATED:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        _UPDATED = True
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    missing = [p for p in provides if not Path(p).exists()]
    if done.returncode != 0 or missing:
        raise RuntimeError(
            f"apt-get install {' '.join(packages)} failed (exit {done.returncode}, still missing "
            f"{missing}): {done.stderr[-2000:]}"
        )
