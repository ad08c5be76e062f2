"""autonomath-pipelines: the self-improvement loops (A–J) of AutonoMath, as Dagster assets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("autonomath-pipelines")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+source"

#: Recorded on every candidate row and as the Dagster code version of every asset.
CODE_VERSION = __version__
