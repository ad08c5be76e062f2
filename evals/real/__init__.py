"""Real-data evaluation: the loops on corpora no one in this project wrote (issue 13).

Each section module (``search``, ``tracebacks``, ``clustering``) has ``evaluate(data_dir) -> list[dict]``;
``run.py`` is the command that prints them as one table. See ``evals/real/README.md``.
"""
