"""Writing files safely, for everything audiodiff writes (checkpoints, configs, logs, audio, images).

Atomic replacement: the content goes to a temporary file in the target's folder, is flushed to disk, and is
renamed over the target, so a crash or a full disk at any moment leaves the old file or the new one, never
a torn one, and no temporary file behind.

`folder_lock` keeps a second process from writing a run folder that one is writing.

The guards, one wording each, used by every command: `refuse_overwrite` (a file a command would replace; --force
lifts it) and `refuse_foreign` (a folder that holds something other than what a command makes there).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`. OSErrors name `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # two writers never share one
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())  # what the user's umask gives a new file, whatever the writer chose
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@functools.lru_cache(maxsize=1)
def _default_mode() -> int:
    mask = os.umask(0o022)  # read it the only way there is, and put it back
    os.umask(mask)
    return 0o666 & ~mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def copy_file(source: str | Path, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def refuse_overwrite(*paths: str | Path, force: bool = False) -> None:
    """ValueError naming the first of `paths` that exists, unless `force`: nothing a user made is replaced unasked."""
    existing = next((Path(p) for p in paths if Path(p).exists()), None)
    if existing is not None and not force:
        raise ValueError(f"{existing}: exists; pass --force to overwrite, or choose another --out")


def refuse_foreign(folder: str | Path, kind: str, ignore: tuple[str, ...] = ()) -> None:
    """ValueError if `folder` exists and holds files (other than those named in `ignore`) although it is not
    `kind` ("an audiodiff run", "empty", ...): a folder a command does not recognise is never written into."""
    folder, ignore = Path(folder), (*ignore, LOCK_FILE)
    if folder.exists() and any(p.name not in ignore for p in folder.iterdir()):
        raise ValueError(f"{folder}: folder exists and is not {kind}; choose another --out")


def refuse_links(folder: str | Path, inside: tuple[str, ...] = ()) -> None:
    """ValueError if an entry of `folder`, of its subfolders named in `inside` or of theirs, is a symbolic link: a
    run folder from someone else could otherwise point its checkpoints/ or samples/ at files outside it, which
    pruning and writing would then touch. The folder itself may be a link (that is the user's own choice)."""
    folder = Path(folder)
    todo = [folder] if folder.is_dir() else []
    for name in inside:
        sub = folder / name
        if sub.is_dir() and not sub.is_symlink():
            todo += [sub, *(d for d in sub.iterdir() if d.is_dir() and not d.is_symlink())]
    for where in todo:
        for entry in where.iterdir():
            if entry.is_symlink():
                raise ValueError(f"{entry}: a symbolic link inside a run folder; a run's files must be its own")


def check_writable(path: str | Path) -> None:
    """OSError naming `path` if a folder could not be made or written there; creates nothing (the folder is made
    when the first file is written, so that a refused command leaves no trace)."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OSError(f"{path}: cannot write here ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OSError(f"{path}: cannot write here ({probe} is not writable)")


def writable_dir(path: str | Path) -> None:
    """Create `path` if needed; OSError naming it if nothing can be written there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".audiodiff-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"{path}: cannot write here ({e.strerror or e})") from None


LOCK_FILE = ".audiodiff.lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold the folder's lock while the block runs: a second process asking for it gets a ValueError naming the
    holder's pid. The lock is the kernel's (flock on folder/.audiodiff.lock), so a killed holder leaves none behind
    and its folder can be taken over at once. Where flock does not exist (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the platforms the tests run on
        yield
        return
    folder = Path(folder)
    writable_dir(folder)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ValueError(f"{folder}: another audiodiff process (pid {holder}) is writing this folder; wait for it "
                             "to end or stop it, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
