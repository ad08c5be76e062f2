"""Writing candidate files safely: names that cannot escape their folder, atomic replacement.

A write never leaves a half-written file: new content goes to a hidden temporary file next to its
target (``.<name>.<pid>.<random>.tmp``, created exclusively, fsynced) and is renamed over it.
Several files change as one with ``replace_files``: everything is staged before the first rename,
so a write that fails (disk full, read-only folder) changes nothing, and if a rename fails midway
the files already replaced are put back. A process killed midway leaves each file whole — its
old or its new content — and at most some hidden temporary files, which the next write of the same
file removes once their process is gone.
"""

from __future__ import annotations

import errno as errno_codes
import glob
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Callable, Mapping, Union

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")

#: What a file becomes: text (UTF-8), bytes, a writer that fills the given temporary path, or
#: None to remove it.
Content = Union[str, bytes, Callable[[Path], None], None]


class FileWriteError(OSError):
    """A file could not be written or replaced; the message names the path and the OS's reason
    (e.g. ``No space left on device (ENOSPC)``) and says what was left as it was."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0])


def is_safe_file_name(name: str) -> bool:
    """A plain file name: no separators, no ``..``, no leading dot, ASCII letters/digits/_.- only."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None and ".." not in name


def safe_path(folder: Path, name: str) -> Path:
    """``folder / name``, refusing any name that is not a plain file name inside ``folder``
    (also a name that is a symlink pointing elsewhere)."""
    if not is_safe_file_name(name):
        raise ValueError(f"unsafe file name {name!r}: only [A-Za-z0-9_.-], no '..', no separators")
    path = (Path(folder) / name).resolve()
    if path.parent != Path(folder).resolve():
        raise ValueError(f"{name!r} would leave {folder}")
    return path


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the OS's words and the errno's name."""
    code = errno_codes.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({code})" if code else text


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, just not ours
        return True
    return True


def sweep_orphans(path: Path) -> int:
    """Remove temporary files a killed process left next to ``path`` (its pid is gone); returns how many."""
    removed = 0
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = candidate.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(path: Path, content: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``content`` to a fresh temporary file next to ``path``; returns the temporary path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # the folder's name is taken by a file
        raise NotADirectoryError(errno_codes.ENOTDIR, os.strerror(errno_codes.ENOTDIR), str(path.parent)) from None
    sweep_orphans(path)
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as handle:  # exclusive: never follows a planted file or symlink
            if not callable(content):
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
                handle.flush()
                os.fsync(handle.fileno())
        if callable(content):
            content(tmp)
            _fsync_path(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _backup(path: Path) -> Path | None:
    """A hard link to the current ``path`` (None if there is none), to put it back without writing
    anything (works on a full disk)."""
    if not os.path.lexists(path):
        return None
    backup = _temp_path(path)
    try:
        os.link(path, backup)
    except OSError:  # no hard links here: keep a copy instead
        backup = _stage(path, path.read_bytes())
    return backup


def replace_files(changes: Mapping[Path, Content]) -> None:
    """Replace (or, for None, remove) every file in ``changes`` as one change.

    Raises ``FileWriteError`` naming the path and the reason; the files are then exactly as before
    (no temporary files left). Killed midway, each file is old or new, never partial.
    """
    changes = {Path(p): c for p, c in changes.items()}
    writes = [p for p, c in changes.items() if c is not None]
    removals = [p for p, c in changes.items() if c is None]
    staged: dict[Path, Path] = {}
    try:
        for path in writes:
            staged[path] = _stage(path, changes[path])
    except OSError as exc:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        failed = next((p for p in writes if p not in staged), writes[-1])
        raise FileWriteError(
            f"cannot write {failed}: {describe_os_error(exc)}; no file was changed", exc.errno, str(failed)
        ) from None
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise

    done: list[tuple[Path, Path | None]] = []  # (target, backup of its old content or None)
    current: Path | None = None
    try:
        for path in [*writes, *removals]:  # writes before removals, as staged
            current = path
            backup = _backup(path)
            try:
                if path in staged:
                    os.replace(staged[path], path)
                    del staged[path]
                else:
                    path.unlink(missing_ok=True)
            except BaseException:
                if backup is not None:
                    backup.unlink(missing_ok=True)
                raise
            done.append((path, backup))
    except BaseException as exc:
        replaced = len(done)
        problems = _restore(done)
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        restored = f"the {replaced} file(s) already replaced were restored" if replaced else "no file was changed"
        if problems:
            restored = f"restoring failed for {', '.join(problems)}"
        raise FileWriteError(
            f"cannot replace {current}: {describe_os_error(exc)}; {restored}", exc.errno, str(current)
        ) from None
    for _, backup in done:
        if backup is not None:
            backup.unlink(missing_ok=True)
    for folder in {p.parent for p in changes}:
        try:
            _fsync_path(folder, directory=True)
        except OSError:  # best effort: some filesystems cannot fsync a directory
            pass


def _restore(done: list[tuple[Path, Path | None]]) -> list[str]:
    """Put back what ``replace_files`` changed, newest first; returns the paths it could not restore."""
    problems = []
    for path, backup in reversed(done):
        try:
            if backup is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(backup, path)
        except OSError as exc:
            problems.append(f"{path} ({describe_os_error(exc)})")
    done.clear()
    return problems


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it into place."""
    replace_files({Path(path): text})


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
