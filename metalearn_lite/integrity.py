"""Files that are either whole and verified or refused: content digests, durable atomic writes, stale temps.

* :func:`content_digest` is a SHA-256 over a nested value of dicts, lists, tuples, tensors and plain
  values (every tensor's dtype, shape and bytes, every key and leaf), the same before a save and after a
  load, so a checkpoint can carry the digest of what it holds and be checked when read.
* :func:`atomic_write` writes bytes to a temporary file next to the target, flushes it to disk (``fsync``),
  renames it into place and flushes the folder: a crash leaves the old file or the new one, never a
  mix, and a power cut after the call returns keeps the new one.
* :func:`remove_stale_temps` deletes the temporary files that processes killed during a save left behind
  (named ``*.tmpPID``; only those of processes that no longer exist).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

TEMP_MARK = ".tmp"


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=repr):
            h.update(repr(k).encode())
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
        for v in value:
            _feed(h, v)
    else:
        h.update(f"V{type(value).__name__}:{value!r};".encode())


def content_digest(value: Any) -> str:
    """SHA-256 (hex) of a nested value: tensors by dtype, shape and bytes, other leaves by type and ``repr``."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def temp_path(path: Path) -> Path:
    """The temporary name a write to ``path`` uses in this process: ``.NAME.tmpPID`` in the same folder."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (someone else's) or we cannot tell: keep its file
    return True


def remove_stale_temps(folder: Path, name: str) -> list[Path]:
    """Delete ``folder/.NAME.tmpPID`` files whose process ``PID`` is gone; returns what was removed."""
    removed = []
    try:
        candidates = list(folder.glob(f".{name}{TEMP_MARK}*"))
    except OSError:
        return removed
    for p in candidates:
        pid = p.name.rsplit(TEMP_MARK, 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` durably and atomically (see the module docstring).

    Raises ``OSError`` (a full disk, a read-only folder) with the target's name; the old file is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, f"could not write {path}: {err.strerror or err}; free some disk space or choose "
                                 "a writable folder (the previous file, if any, is unchanged)") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder
    return path
