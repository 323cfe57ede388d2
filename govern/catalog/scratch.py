"""Scratch files under GOVERN_HOME that a process is still writing, and the sweep that removes
the ones a killed process left behind.

A writer *claims* a new scratch path: it creates it and holds an exclusive ``flock`` on it for
as long as the file is its own. The kernel drops the lock when the process dies, SIGKILL
included, so a sweep that can take the lock knows the owner is gone. A serving gateway and a
CLI share GOVERN_HOME, so a sweep never removes a path whose lock is held.

A claimed *folder* is a lock file ``<name>.lock`` beside a folder ``<name>/`` (a folder's own
lock would be lost with a rename, and tools writing into it open their own files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from govern.errors import StorageFull

__all__ = [
    "Claim",
    "claim_file",
    "claim_folder",
    "disk_errors",
    "release_folder",
    "sweep_files",
    "sweep_folders",
]

_TRIES = 5


@dataclass
class Claim:
    """A scratch path this process owns until ``release``."""

    path: Path
    _fd: int

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def claim_file(folder: Path, prefix: str, suffix: str) -> Claim:
    """Create a new empty file ``folder/<prefix><random><suffix>`` and lock it."""
    for _ in range(_TRIES):
        path = folder / f"{prefix}{secrets.token_hex(8)}{suffix}"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        if _locked_in_place(fd, path):
            return Claim(path, fd)
    raise OSError(f"could not claim a scratch file in {folder}")


def claim_folder(parent: Path) -> Claim:
    """Create a new folder under ``parent`` and lock it through its ``.lock`` file; the
    claim's path is the folder."""
    parent.mkdir(parents=True, exist_ok=True)
    lock = claim_file(parent, "", ".lock")
    folder = lock.path.with_suffix("")
    folder.mkdir()
    return Claim(folder, lock._fd)


def release_folder(claim: Claim) -> None:
    """Remove a claimed folder with its contents, then its lock file. Files are emptied
    first: a writer that failed midway (a multipart parser on a full disk) may still hold one
    open until it is collected, and its space must come back now."""
    with contextlib.suppress(OSError):
        for path in claim.path.iterdir():
            with contextlib.suppress(OSError):
                os.truncate(path, 0)
    shutil.rmtree(claim.path, ignore_errors=True)
    claim.path.with_suffix(".lock").unlink(missing_ok=True)
    claim.release()


def _locked_in_place(fd: int, path: Path) -> bool:
    """Lock a file just created; False (and closed) when a sweep took it first: the sweep
    holds the lock, or already removed the path."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return True
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return False


@contextlib.contextmanager
def _if_unowned(path: Path) -> Iterator[bool]:
    """Hold ``path``'s lock for the block when nobody else holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def sweep_files(paths: Iterator[Path], keep: Callable[[Path], bool] = lambda _: False) -> int:
    """Remove each file no live process holds, unless ``keep`` (asked while the lock is held,
    so an owner cannot finish in between) says it is now in use. Returns how many went."""
    removed = 0
    for path in paths:
        with _if_unowned(path) as free:
            if free and not keep(path):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def sweep_folders(parent: Path) -> int:
    """Remove each claimed folder under ``parent`` whose owner is gone."""
    removed = 0
    if not parent.is_dir():
        return 0
    for lock in parent.glob("*.lock"):
        with _if_unowned(lock) as free:
            if free:
                shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
                lock.unlink(missing_ok=True)
                removed += 1
    return removed


_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """Turn "no space left" (or quota exceeded) into StorageFull: a clear 507, not a 500."""
    try:
        yield
    except OSError as exc:
        # pyarrow's IO errors carry the reason in the message, not in errno.
        if exc.errno in _FULL or any(os.strerror(code) in str(exc) for code in _FULL):
            raise StorageFull(
                "no space left under GOVERN_HOME; nothing was stored",
                details={"reason": "no_space"},
            ) from exc
        raise
