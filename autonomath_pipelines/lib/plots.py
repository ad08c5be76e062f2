"""Plots for reports and benchmarks: matplotlib on its file-only backend."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: figures go to files, never to a display (a headless
    host, a scheduled run). Imported on first use: matplotlib costs a second of start-up."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
