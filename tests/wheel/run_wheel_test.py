"""The package as a learner installs it: built into a wheel, installed without ``-e``, used from another folder.

``make test-wheel`` (part of ``make test``) runs this script with the project's ``.venv`` python:

1. builds an sdist of the repository with setuptools' PEP 517 hooks, checks that it holds the shipped data,
   and builds the wheel from the unpacked sdist (what ``python -m build`` does), checking the wheel too;
2. creates a fresh virtual environment in a temporary folder and installs the wheel into it with
   ``pip install --no-index``: no ``-e``, nothing downloaded.  The dependencies are the pinned versions
   already installed in ``.venv``: a ``.pth`` file shows the fresh environment a folder of links to
   ``.venv``'s site-packages (pip included) *without* the editable install (its finder, its ``.pth`` files and its
   ``metalearn_lite`` metadata are left out), so pip resolves the wheel's requirements against exactly
   those versions (``-c requirements/constraints.txt``) and the package can only come from the wheel;
3. runs ``inside.py`` with the fresh environment's python, from a folder outside the repository, without
   ``PYTHONPATH`` or ``METALEARN_LITE_DATA``: it loads Omniglot, lists and loads every shipped model,
   evaluates one from Python and one from the command line, and trains a ProtoNet on generated images.

Prints the wheel's size and the time from ``pip install`` to the first evaluation.  Budget: 3 minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "metalearn_lite")
BUDGET_S = 180


def shipped_files() -> list[str]:
    """Every data file under ``metalearn_lite/data`` in the repository, as a path inside the package."""
    data = REPO / "metalearn_lite" / "data"
    return sorted(str(p.relative_to(REPO)) for p in data.rglob("*") if p.is_file())


def hooks(call: str, cwd: Path, out: Path) -> str:
    """Run setuptools' PEP 517 hook ``call`` (``build_sdist`` or ``build_wheel``) in ``cwd``; the file's name."""
    code = f"from setuptools import build_meta; print(build_meta.{call}({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{call} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def build(tmp: Path) -> Path:
    """The wheel, built from an sdist of a copy of the repository's package sources."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    sdist = dist / hooks("build_sdist", src, dist)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        missing = sorted(set(shipped_files()) - names)
        assert not missing, f"the sdist lacks {missing}: check [tool.setuptools.package-data] in pyproject.toml"
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # the filter is in 3.10.12+
        tar.extractall(tmp / "unpacked", **safe)
    unpacked = next((tmp / "unpacked").iterdir())
    wheel = dist / hooks("build_wheel", unpacked, dist)
    with zipfile.ZipFile(wheel) as zf:
        missing = sorted(set(shipped_files()) - set(zf.namelist()))
    assert not missing, f"the wheel lacks {missing}: check [tool.setuptools.package-data] in pyproject.toml"
    return wheel


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def pinned_dependencies(tmp: Path) -> Path:
    """A folder of links to ``.venv``'s installed distributions (pip and setuptools included), without the editable
    metalearn_lite."""
    base = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()))
    deps = tmp / "pinned-deps"
    deps.mkdir()
    for entry in base.iterdir():
        name = entry.name.lower()
        editable = "metalearn_lite" in name or name.startswith("__editable__") or name.endswith(".pth")
        if editable or name == "__pycache__":
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metalearn-wheel-") as name:
        tmp = Path(name)
        wheel = build(tmp)
        size_kb = wheel.stat().st_size / 1024
        print(f"built {wheel.name}: {size_kb:.0f} KB ({time.monotonic() - started:.0f} s)", flush=True)

        venv = tmp / "venv"
        # without a pip of its own: the pinned pip and setuptools come with the other pinned packages
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        (site_packages(python) / "pinned-deps.pth").write_text(f"{pinned_dependencies(tmp)}\n")

        away = tmp / "elsewhere"  # a folder outside the repository: the learner's own project
        away.mkdir()
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "METALEARN_LITE_DATA", "VIRTUAL_ENV", "PYTHONHOME")}
        env.update(METALEARN_LITE_CACHE=str(tmp / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="2",
                   PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
        install_started = time.time()
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheel.parent),
                        "-c", str(CONSTRAINTS), str(wheel)], check=True, cwd=away, env=env)
        print(f"pip install of the wheel (no index): {time.time() - install_started:.1f} s", flush=True)
        shutil.copy2(HERE / "inside.py", away / "inside.py")
        proc = subprocess.run([str(python), "inside.py", str(REPO), json.dumps(shipped_files())], cwd=away, env=env,
                              capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            print(proc.stderr[-5000:], file=sys.stderr)
            print("wheel test FAILED", file=sys.stderr)
            return 1
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"wheel {size_kb:.0f} KB; pip install to the first evaluate: "
              f"{report['first_evaluate_at'] - install_started:.1f} s")
    total = time.monotonic() - started
    print(f"wheel test passed in {total:.0f} s (budget {BUDGET_S} s)")
    if total > BUDGET_S:
        print(f"over the {BUDGET_S} s budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
