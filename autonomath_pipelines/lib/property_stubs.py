"""Loop G's property-test stubs: one Hypothesis stub per failure mode, and the checks it must pass.

A stub is rendered from ``lib/templates/property_stub.py.j2``, marked ``xfail(strict)`` until the
operator completes it, and carries two markers: ``# autonomath-invariant: <mode>`` (what it covers)
and ``# autonomath-partition: <key>`` (which run wrote it, so a re-run replaces its own files and
never an edited one). Every text from the logs goes in as a one-line comment or a ``repr``: a
traceback line can break neither the file nor the test collection.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from autonomath_pipelines.lib import gates
from autonomath_pipelines.lib.files import edited_since_generated, is_safe_file_name, mark_generated
from autonomath_pipelines.lib.gates import Gate, GateResult
from autonomath_pipelines.lib.templating import template

TEMPLATE = "property_stub.py.j2"
MARKER = re.compile(r"^#\s*autonomath-invariant:\s*([a-z0-9_]+)\s*$", re.MULTILINE)
PARTITION_MARKER = re.compile(r"^#\s*autonomath-partition:\s*(\S+)\s*$", re.MULTILINE)


def comment_text(value: object, limit: int = 200) -> str:
    """One line safe inside a ``#`` comment: no line breaks or other non-printable characters."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else " " for ch in text)[:limit]


def stub_file_name(mode: str) -> str:
    return f"test_{mode}.py"


def as_list(value) -> list:
    """A list column after a parquet round trip (numpy array, list or missing) as a plain list."""
    if value is None or isinstance(value, (str, bytes, float)):
        return []
    try:
        return list(value)
    except TypeError:
        return []


def render_stub(group: dict, partition_key: str) -> str:
    sample = [comment_text(line) for line in str(group.get("sample_trace") or "").splitlines()[:60]]
    examples = [repr(comment_text(x, 80)) for x in as_list(group.get("example_inputs"))]
    reason = f"candidate invariant for {group['mode']} ({group['count']} occurrences): not written yet"
    return mark_generated(
        template(TEMPLATE).render(
            mode=group["mode"],
            partition_key=comment_text(partition_key),
            kind=group["kind"],
            count=int(group["count"]),
            first_seen=comment_text(group["first_seen"]),
            last_seen=comment_text(group["last_seen"]),
            endpoints=comment_text(", ".join(as_list(group.get("endpoints")))),
            fingerprint=comment_text(group["fingerprint"]),
            examples_text=[comment_text(m) for m in as_list(group.get("messages"))],
            sample_lines=sample,
            examples=examples,
            reason=repr(reason),
            todo=repr(f"complete the invariant for {group['mode']}"),
        )
    )


def covered_modes(folder: Path) -> set[str]:
    """Failure modes a file under ``folder`` (the service's tests/properties/, outside _candidates)
    already covers: by its name (``test_<mode>.py`` / ``<mode>.py``) or an
    ``# autonomath-invariant: <mode>`` marker."""
    covered: set[str] = set()
    if not folder.is_dir():
        return covered
    for path in folder.rglob("*.py"):
        if "_candidates" in path.relative_to(folder).parts:
            continue
        covered.add(path.stem.removeprefix("test_"))
        try:
            covered.update(MARKER.findall(path.read_text(encoding="utf-8", errors="replace")[:4000]))
        except OSError:
            pass
    return covered


def earlier_stubs(folder: Path, partition_key: str) -> list[str]:
    """Candidate files in ``folder`` an earlier run of this partition wrote (by their partition marker)."""
    names = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            try:
                head = path.read_text(encoding="utf-8", errors="replace")[:400]
            except OSError:
                continue
            if partition_key in PARTITION_MARKER.findall(head) and is_safe_file_name(path.name):
                names.append(path.name)
    return names


def compiles(text: str, name: str) -> bool:
    try:
        compile(text, name, "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def collected_by_pytest(files: dict[str, str], timeout: float = 120.0) -> dict[str, bool]:
    """Which stubs ``pytest --collect-only`` collects, run in a subprocess over a temp dir copy."""
    if not files:
        return {}
    with tempfile.TemporaryDirectory(prefix="invariant_stubs_") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                "-c",
                str(folder / "pytest.ini"),
                "--rootdir",
                str(folder),
                *sorted(files),
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    collected = {line.split("::", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    return {name: name in collected for name in files}


def all_true(column: str, name: str, description: str) -> Gate:
    def evaluate(frame: pd.DataFrame) -> GateResult:
        bad = sorted(frame.loc[~frame[column].astype(bool), "file_name"]) if len(frame) else []
        return GateResult(not bad, f"{len(bad)} stubs failing" + (f": {bad[:5]}" if bad else ""), {"failing": len(bad)})

    return Gate(name, description, evaluate)


def safe_names(frame: pd.DataFrame) -> GateResult:
    bad = [n for n in frame["file_name"] if not is_safe_file_name(n)] if len(frame) else []
    return GateResult(not bad, f"{len(bad)} unsafe file names" + (f": {bad[:5]}" if bad else ""), {"unsafe": len(bad)})


#: Most stubs one run may propose.
MAX_STUBS = 50
CANDIDATE_GATES = (
    all_true("compiles", "stubs_compile", "Every stub is valid Python (compile())."),
    all_true("collected", "stubs_collected", "pytest --collect-only collects every stub."),
    Gate("file_names_safe", "Every file name is a plain name that cannot leave the candidates folder.", safe_names),
    gates.row_cap(MAX_STUBS),
)


def operator_edited(folder: Path, names) -> list[str]:
    """Candidate files in ``folder`` that exist and are no longer the loop's own text: work in
    progress toward promotion, never overwritten or removed by a re-run."""
    return sorted(
        {
            name
            for name in names
            if is_safe_file_name(name)
            and (folder / name).is_file()
            and edited_since_generated((folder / name).read_text(encoding="utf-8", errors="replace"))
        }
    )
