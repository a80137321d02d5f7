"""Writing files safely, for everything audiodiff writes (checkpoints, configs, logs, audio, images).

Atomic replacement: the content goes to a temporary file in the target's folder, is flushed to disk, and is
renamed over the target, so a crash or a full disk at any moment leaves the old file or the new one, never
a torn one, and no temporary file behind.

The guards, one wording each, used by every command: `refuse_overwrite` (a file a command would replace; --force
lifts it) and `refuse_foreign` (a folder that holds something other than what a command makes there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`. OSErrors name `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
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
    folder = Path(folder)
    if folder.exists() and any(p.name not in ignore for p in folder.iterdir()):
        raise ValueError(f"{folder}: folder exists and is not {kind}; choose another --out")


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
