"""Bad files as the AutonoMath database (issue 14, defect 5): every CLI entry that opens it answers in
one line on stderr, exit 2, naming the file and what is wrong, and leaves the file exactly as it was
(review never turns an empty file into a database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autonomath_pipelines.cli import main


def _bad_files(root: Path, good_db: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, the words the error must contain)."""
    (root / "empty.db").write_bytes(b"")
    (root / "text.db").write_text("id,name\n1,補助金\n", encoding="utf-8")
    data = good_db.read_bytes()
    (root / "truncated.db").write_bytes(data[: len(data) // 2 + 100])  # cut mid-page
    (root / "cut-at-page.db").write_bytes(data[: 4096 * 2])  # cut at a page boundary
    (root / "header-only.db").write_bytes(data[:60])
    (root / "a-directory.db").mkdir()
    return {
        "empty": (root / "empty.db", "empty file"),
        "text": (root / "text.db", "not an SQLite database"),
        "truncated": (root / "truncated.db", "truncated"),
        "cut-at-page": (root / "cut-at-page.db", "truncated"),
        "header-only": (root / "header-only.db", "truncated"),
        "directory": (root / "a-directory.db", "is a directory"),
    }


def _snapshot(path: Path):
    return "dir" if path.is_dir() else path.read_bytes()


@pytest.fixture
def bad_files(tmp_path, programs_db):
    root = tmp_path / "bad"
    root.mkdir()
    return _bad_files(root, programs_db)


COMMANDS = {
    "run": lambda db, tmp: ["run", "--only", "H", "--db", db, "--reports-dir", str(tmp / "reports")],
    "run --execute": lambda db, tmp: [
        "run",
        "--only",
        "H",
        "--execute",
        "--db",
        db,
        "--reports-dir",
        str(tmp / "reports"),
    ],
    "review list": lambda db, tmp: ["review", "list", "--db", db, "--repo-root", str(tmp)],
    "review approve --execute": lambda db, tmp: [
        "review",
        "approve",
        "--loop",
        "A",
        "--execute",
        "--db",
        db,
        "--repo-root",
        str(tmp),
    ],
    "review promote --execute": lambda db, tmp: [
        "review",
        "promote",
        "--loop",
        "A",
        "--execute",
        "--db",
        db,
        "--repo-root",
        str(tmp),
    ],
    "eval --db": lambda db, tmp: ["eval", "--db", db, "--out", str(tmp / "eval")],
    "bench loops": lambda db, tmp: ["bench", "loops", "--db", db, "--out", str(tmp / "bench")],
    "bench loop-h": lambda db, tmp: ["bench", "loop-h", "--db", db, "--out", str(tmp / "bench")],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "cut-at-page", "header-only", "directory"])
def test_a_bad_database_file_is_one_line_exit_2(command, kind, bad_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    path, words = bad_files[kind]
    if command == "eval --db" and path.is_file():
        # eval wants a demo world: give the bad file a truth, so it gets as far as opening the database.
        Path(f"{path}.truth.json").write_text('{"as_of": "2026-11-21"}', encoding="utf-8")
    before = _snapshot(path)
    assert main(COMMANDS[command](str(path), tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(path) in err[0] and words in err[0], err[0]
    assert "Traceback" not in err[0]
    assert _snapshot(path) == before, "the bad file was changed"


def test_digest_reports_a_bad_database_as_a_note(bad_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    path, words = bad_files["text"]
    assert main(["digest", "--db", str(path), "--reports-dir", str(tmp_path / "reports")]) == 0
    out = capsys.readouterr().out
    assert "Promotions not counted" in out and str(path) in out and words in out
