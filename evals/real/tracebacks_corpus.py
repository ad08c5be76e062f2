"""Build a traceback corpus from real interpreter output: every CPython 3.8–3.13 found on the machine
runs a small service package with planted bugs, and what it prints is collected as a service logs it.

    .venv/bin/python evals/real/tracebacks_corpus.py --out data/real/tracebacks/cpython_versions
    .venv/bin/python evals/real/tracebacks_corpus.py --out evals/real/fixtures/tracebacks/cpython_small --small

Nothing here is hand-written trace text: each trace is what ``python3.X`` printed (``traceback`` via
stderr, ``logging.exception``, a JSON log record, ``asyncio.TaskGroup`` exception groups on ≥ 3.11).
The label of a trace is the bug that raised it (the corpus author's grouping). Bugs are chosen so that
the exception type, and type + normalized message, are ambiguous between different bugs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile

#: The service package the interpreters run; every bug is one function, called with one input.
APP = {
    "app/__init__.py": "",
    "app/scoring.py": "def region_boost(hit, key):\n    return hit[key] * 2\n",
    "app/cache.py": "CACHE = {}\n\ndef lookup(key):\n    return CACHE[key]\n",
    "app/parse.py": "def fiscal_year(text):\n"
    "    return int(text.removesuffix('年度') if hasattr(text, 'removesuffix') else text)\n",
    "app/forms.py": "def age(field):\n    value = field.strip()\n    return int(value)\n",
    "app/webhook.py": "import json\n\ndef handle(body):\n    event = json.loads(body)\n    return event['type']\n",
    "app/stats.py": "def mean(xs):\n    return sum(xs) / len(xs)\n",
    "app/db.py": (
        "import sqlite3\n\nclass StorageError(Exception):\n    pass\n\n"
        "def read(table):\n    conn = sqlite3.connect(':memory:')\n    try:\n"
        "        return conn.execute('SELECT * FROM ' + table).fetchall()\n"
        "    except sqlite3.OperationalError as exc:\n"
        "        raise StorageError('could not read ' + table) from exc\n"
    ),
    "app/render.py": "def render(program):\n    return {'deadline': program.get('closes_at')}\n\n"
    "def detail(pid):\n    return render(None)\n",
    "app/alias.py": "def follow(graph, node):\n    return follow(graph, graph[node])\n",
    "app/jobs.py": (
        "import asyncio\n\nasync def fetch(n):\n    raise ValueError('bad page ' + str(n))\n\n"
        "async def run_batch(n):\n    async with asyncio.TaskGroup() as tg:\n"
        "        tg.create_task(fetch(n))\n\ndef batch(n):\n    asyncio.run(run_batch(n))\n"
    ),
}

#: label → (module, call with ``{x}`` for the varying input, inputs, minimum Python minor version)
BUGS = {
    "region_keyerror": ("app.scoring", "region_boost({{'a': 1}}, {x!r})", ["prefecture_code", "municipality"], 8),
    "cache_keyerror": ("app.cache", "lookup({x!r})", ["user:42", "user:7"], 8),
    "fiscal_year_int": ("app.parse", "fiscal_year({x!r})", ["令和8", "R8"], 8),
    "form_age_int": ("app.forms", "age({x!r})", ["abc", "12歳"], 8),
    "webhook_json": ("app.webhook", "handle({x!r})", ["", "{bad json"], 8),
    "stats_zero_division": ("app.stats", "mean({x!r})", [[], ()], 8),
    "db_missing_table": ("app.db", "read({x!r})", ["programs", "rounds"], 8),
    "render_none": ("app.render", "detail({x!r})", ["P1", "P2"], 8),
    "alias_recursion": ("app.alias", "follow({x!r}, 'a')", [{"a": "a"}, {"a": "a", "b": "a"}], 8),
    "batch_exception_group": ("app.jobs", "batch({x!r})", [3, 17], 11),
}

#: How the trace leaves the process (each run prints through one of these).
DRIVER = r"""
import json, logging, sys, traceback
sys.path.insert(0, sys.argv[1])
mode = sys.argv[2]
import importlib
module = importlib.import_module(sys.argv[3])
logging.basicConfig(format="%(asctime)s %(levelname)s [%(name)s] %(message)s", stream=sys.stdout)
try:
    exec(sys.argv[4], vars(module))
except BaseException:
    if mode == "stderr":
        traceback.print_exc(file=sys.stdout)
    elif mode == "logging":
        logging.getLogger("app.api").exception("request failed")
    else:
        print(json.dumps({"level": "error", "logger": "app.api", "message": "request failed",
                          "exc_info": traceback.format_exc()}))
"""
MODES = ("stderr", "logging", "json")


def interpreters() -> list[tuple[str, int]]:
    """(path, minor) of every CPython 3.8–3.13 on the machine (pyenv installs, then PATH)."""
    found: dict[int, str] = {}
    for path in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))):
        minor = int(pathlib.Path(path).parents[1].name.split(".")[1])
        if 8 <= minor <= 13:
            found.setdefault(minor, path)
    return sorted(((p, m) for m, p in found.items()), key=lambda t: t[1])


def build(out: pathlib.Path, small: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="srv_") as tmp:
        root = pathlib.Path(tmp)
        for name, text in APP.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        pythons = interpreters()
        if small:
            pythons = [pythons[0], pythons[-1]] if pythons else []
        for python, minor in pythons:
            for label, (module, call, inputs, min_minor) in BUGS.items():
                if minor < min_minor:
                    continue
                for k, x in enumerate(inputs[:1] if small else inputs):
                    for mode in MODES[:2] if small else MODES:
                        proc = subprocess.run(
                            [python, "-c", DRIVER, str(root), mode, module, call.format(x=x)],
                            capture_output=True,
                            text=True,
                            timeout=60,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                        )
                        text = proc.stdout.replace(str(root), "/srv/service")
                        rows.append({"text": text, "label": label, "python": f"3.{minor}", "mode": mode})
    with open(out / "traces.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "corpus.json").write_text(json.dumps({"in_app_prefixes": ["/srv/service/app/"]}) + "\n", encoding="utf-8")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--small", action="store_true", help="oldest and newest Python, one input, two modes")
    args = parser.parse_args(argv)
    print(f"{build(args.out, args.small)} traces → {args.out / 'traces.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
