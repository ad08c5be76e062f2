"""Loop settings: dry run by default, a per-loop execute allowlist, output paths."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class LoopSettings(dg.ConfigurableResource):
    """Whether loops may write, and where their files go.

    Execution is enabled per loop: a loop writes only if its id (or ``*``) is in
    ``execute_loops``. Empty (the default) means every loop is a dry run.
    """

    execute_loops: list[str] = Field(
        default_factory=lambda: _env_list("AUTONOMATH_EXECUTE_LOOPS"),
        description="Loop ids allowed to write to the AutonoMath database, or '*' (env AUTONOMATH_EXECUTE_LOOPS).",
    )
    reports_dir: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_REPORTS_DIR", "reports"),
        description="Where run reports go (<dir>/self_improve_runs/<date>.json).",
    )
    repo_root: str = Field(
        default_factory=lambda: os.environ.get("AUTONOMATH_REPO_ROOT", "."),
        description="The service repository root for file outputs (evals/, tests/properties/).",
    )

    def execution_enabled(self, loop_id: str) -> bool:
        return "*" in self.execute_loops or loop_id in self.execute_loops

    def reports_path(self) -> Path:
        return Path(self.reports_dir).expanduser().resolve()

    def repo_path(self) -> Path:
        return Path(self.repo_root).expanduser().resolve()
