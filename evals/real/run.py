"""The real-data eval: search, loop G and loops A/E on public corpora on disk, one table.

    .venv/bin/python evals/real/run.py --data data/real [--only search|G|A/E ...] [--out reports/real]

``--data`` holds one folder per section (layouts in each section module's docstring and in
``evals/real/README.md``); a section whose folder is missing is reported as skipped, not failed.
Writes ``real_eval.md`` and ``real_eval.json`` under ``--out``. Exit 1 when a verdict is FAIL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: section name → module under evals/real that evaluates it.
SECTIONS = {"search": "evals.real.search", "G": "evals.real.tracebacks", "A/E": "evals.real.clustering"}
COLUMNS = ("section", "corpus", "metric", "value", "baseline", "target", "verdict", "n")


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def run(data_dir: pathlib.Path, only: list[str] | None = None) -> tuple[list[dict], dict[str, float]]:
    """Every selected section's rows, and each section's wall seconds."""
    rows: list[dict] = []
    seconds: dict[str, float] = {}
    for section, module_name in SECTIONS.items():
        if only and section not in only:
            continue
        started = time.perf_counter()
        print(f"[real eval] {section}: evaluating …", file=sys.stderr, flush=True)
        module = importlib.import_module(module_name)
        section_rows = module.evaluate(data_dir)
        seconds[section] = round(time.perf_counter() - started, 1)
        print(f"[real eval] {section}: {len(section_rows)} rows in {seconds[section]} s", file=sys.stderr, flush=True)
        rows.extend(section_rows)
    return rows, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, required=True, help="folder with the corpora (see README)")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="a section (repeatable)")
    parser.add_argument("--out", type=pathlib.Path, default=REPO_ROOT / "reports" / "real")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"real eval: --data {args.data} is not a folder", file=sys.stderr)
        return 2
    rows, seconds = run(args.data, args.only)
    table = markdown_table(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_eval.md").write_text(
        f"# Real-data eval\n\nData: `{args.data}`\n\n{table}\n\nSeconds per section: {seconds}\n", encoding="utf-8"
    )
    (args.out / "real_eval.json").write_text(
        json.dumps({"data": str(args.data), "rows": rows, "seconds": seconds}, ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    return 1 if any(row.get("verdict") == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
