"""Loop-quality suite: every loop (A–J) on the demo world, dry run, scored against the planted truth.

    .venv/bin/python evals/loop_quality.py [--scale small|medium|production] [--seed 7] [--db PATH] [--out reports/eval]

The same as ``autonomath-loops eval``; the logic lives in ``autonomath_pipelines/quality/``
(importable by the CLI and the tests). Writes ``loop_quality.md``, ``.json`` and ``.png`` under ``--out``.
"""

import sys

from autonomath_pipelines.quality.runner import main

if __name__ == "__main__":
    sys.exit(main())
