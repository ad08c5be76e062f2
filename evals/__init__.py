"""Evaluation scripts and data of autonomath-pipelines (``evals.real`` is importable from the repo root)."""
