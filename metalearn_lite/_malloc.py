"""Keep glibc from handing big tensor buffers back to the kernel after every step.

With glibc's defaults, blocks above the (dynamic) mmap threshold are ``mmap``-ed on allocation and
returned to the system when freed, so a training step that frees and re-allocates the same large
activations pays page faults for all of them every step.  Raising the mmap threshold (1 GiB) and
the trim threshold keeps those blocks in the heap for reuse.  ``benchmarks/protonet_step.py``
measures the effect.  Set ``METALEARN_LITE_MALLOC_TUNING=0`` to keep glibc's defaults.

Importing the package changes nothing: the tuning is applied by :func:`tune_for_training` when work starts
(``train``, ``evaluate``, the command line), once per process.  It is process-wide, so it is only ever applied
on behalf of a caller who asked the package to train or evaluate.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest it accepts


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds; ``True`` if applied (Linux with glibc only)."""
    if os.environ.get("METALEARN_LITE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


_APPLIED: bool | None = None  # None: not tried yet in this process


def tune_for_training() -> bool:
    """Apply :func:`tune_malloc` once per process (later calls return the first answer)."""
    global _APPLIED
    if _APPLIED is None:
        _APPLIED = tune_malloc()
    return _APPLIED


def malloc_tuned() -> bool:
    """Whether this process has had the tuning applied (``False`` before any training or evaluation)."""
    return bool(_APPLIED)
