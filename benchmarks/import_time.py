"""How long does ``import metalearn_lite`` take, next to ``import torch``?

Each measurement is a fresh interpreter that imports the module and prints the seconds it took
(``time.perf_counter`` around the import statement, interpreter start-up excluded).  The two kinds of
process alternate (torch, package, torch, package, ... with the order swapped every round), so that
drift of a shared machine's speed reaches both alike; the table gives the medians and their
difference.  The package's import includes torch's, so the difference is what the package adds.
On a shared machine torch's own import drifts by a few hundred ms between processes, more than the
package adds; so each package process also imports torch first and times the two statements apart,
and the last line gives the median of that in-process split (the steadier number).

Bytecode: an installed package imports from cached ``.pyc`` files.  Where ``PYTHONDONTWRITEBYTECODE``
is set (as on some shared machines) every import recompiles the package's sources, which alone
costs ~75 ms; the child processes therefore run without it, with their bytecode cache in a temporary
folder (``PYTHONPYCACHEPREFIX``, filled by the warm-up rounds).  ``--as-is`` keeps the environment.

    PYTHONPATH=. python benchmarks/import_time.py              # 15 rounds, ~1 minute on 2 CPU cores
    PYTHONPATH=. python benchmarks/import_time.py --rounds 31
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
SPLIT = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); import metalearn_lite; "
         "t2 = time.perf_counter(); print(t2 - t0, t2 - t1)")


ENV = dict(os.environ)


def run_probe(code: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV).stdout
    return [float(v) for v in out.strip().splitlines()[-1].split()]


def import_seconds(module: str) -> tuple[float, float]:
    """Seconds a fresh interpreter spends on ``import module``, and (for the package) on the part after torch."""
    if module == "metalearn_lite":
        total, after_torch = run_probe(SPLIT)
        return total, after_torch
    return run_probe(PROBE.format(module=module))[0], 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="fresh processes per module (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (page cache)")
    parser.add_argument("--as-is", action="store_true", help="keep PYTHONDONTWRITEBYTECODE and the usual cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        if not args.as_is:
            ENV.pop("PYTHONDONTWRITEBYTECODE", None)
            ENV["PYTHONPYCACHEPREFIX"] = cache
        measure(args)


def measure(args: argparse.Namespace) -> None:
    modules = ["torch", "metalearn_lite"]
    for _ in range(args.warmup):
        for m in modules:
            import_seconds(m)
    times: dict[str, list[float]] = {m: [] for m in modules}
    diffs, after_torch = [], []
    for r in range(args.rounds):
        order = modules if r % 2 == 0 else modules[::-1]
        got = {m: import_seconds(m) for m in order}
        for m in modules:
            times[m].append(got[m][0])
        diffs.append(got["metalearn_lite"][0] - got["torch"][0])
        after_torch.append(got["metalearn_lite"][1])
    med = {m: statistics.median(v) for m, v in times.items()}
    cache = "no bytecode cache" if "PYTHONDONTWRITEBYTECODE" in ENV else "bytecode cached"
    print(f"fresh interpreters ({cache}), {args.rounds} interleaved rounds, medians:")
    print(f"  import torch           {1e3 * med['torch']:8.0f} ms")
    print(f"  import metalearn_lite  {1e3 * med['metalearn_lite']:8.0f} ms")
    print(f"  difference             {1e3 * (med['metalearn_lite'] - med['torch']):8.0f} ms"
          f"   (median of per-round differences: {1e3 * statistics.median(diffs):.0f} ms)")
    print(f"  in one process, import metalearn_lite after import torch: {1e3 * statistics.median(after_torch):.0f} ms")


if __name__ == "__main__":
    main()
