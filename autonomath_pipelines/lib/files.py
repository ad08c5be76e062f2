"""Writing candidate files safely: names that cannot escape their folder, atomic replacement."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}$")


def is_safe_file_name(name: str) -> bool:
    """A plain file name: no separators, no ``..``, no leading dot, ASCII letters/digits/_.- only."""
    return isinstance(name, str) and bool(_SAFE_NAME.match(name)) and ".." not in name


def safe_path(folder: Path, name: str) -> Path:
    """``folder / name``, refusing any name that is not a plain file name inside ``folder``."""
    if not is_safe_file_name(name):
        raise ValueError(f"unsafe file name {name!r}: only [A-Za-z0-9_.-], no '..', no separators")
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise ValueError(f"{name!r} would leave {folder}")
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: Last line of a file a loop generated: the digest of everything above it.
GENERATED_MARK = "# autonomath-generated-sha256: "


def mark_generated(text: str) -> str:
    """``text`` with a last line holding its digest, so a later run can tell its own untouched file
    from one the operator has edited (and must not be overwritten)."""
    body = text if text.endswith("\n") else text + "\n"
    return f"{body}{GENERATED_MARK}{hashlib.sha256(body.encode('utf-8')).hexdigest()}\n"


def edited_since_generated(text: str) -> bool:
    """Whether ``text`` differs from what ``mark_generated`` produced (no mark at all counts as edited)."""
    body, mark, digest = text.rpartition(GENERATED_MARK)
    if not mark:
        return True
    return digest.strip() != hashlib.sha256(body.encode("utf-8")).hexdigest()
