"""Do the pinned constraints resolve on every Python that pyproject's ``requires-python`` declares?

``make check-python-versions`` runs this with the project's ``.venv`` python.  For each declared minor version
it takes the lowest release the specifier allows (``3.11.5`` for ``>=3.11.5``) and asks pip whether every line of
``requirements/constraints.txt`` has a binary wheel for it, on this platform, from the package index::

    pip install --dry-run --ignore-installed --only-binary=:all: --python-version X -r requirements/constraints.txt

It fails when a declared version does not resolve, and reports the versions just outside the specifier too (the
release below the floor, the minor versions on either side), so a bound that could move shows.  Needs the
package index (nothing is installed); a few minutes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11 is not declared
    sys.exit("run this with Python >= 3.11 (it reads pyproject.toml with tomllib)")

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "requirements" / "constraints.txt"


def lowest_allowed(spec: SpecifierSet, minor: int) -> str | None:
    """The lowest ``3.minor.patch`` (patch < 30) that ``spec`` allows, or ``None``."""
    return next((f"3.{minor}.{patch}" for patch in range(30) if spec.contains(f"3.{minor}.{patch}")), None)


def resolves(version: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as target:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--disable-pip-version-check", "--only-binary=:all:", "--python-version", version, "--target", target,
             "-r", str(CONSTRAINTS)],
            capture_output=True, text=True,
        )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: No matching")]
    return proc.returncode == 0, (errors[0] if errors else proc.stderr.strip()[-300:])


def main() -> int:
    spec = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    print(f"requires-python {spec}; checking {CONSTRAINTS.relative_to(REPO)} on this platform")
    minors = [m for m in range(6, 30) if lowest_allowed(spec, m)]
    if not minors:
        sys.exit(f"requires-python {spec} allows no Python 3 release")
    floor = lowest_allowed(spec, minors[0]) or ""
    below = [f"3.{minors[0]}.{int(floor.split('.')[2]) - 1}"] if not floor.endswith(".0") else []
    versions = [f"3.{minors[0] - 1}", *below, *(lowest_allowed(spec, m) for m in minors), f"3.{minors[-1] + 1}"]
    wrong = []
    for version in versions:
        declared = spec.contains(version)
        ok, why = resolves(version)
        verdict = "resolves" if ok else f"fails: {why}"
        print(f"  {version:7s} {'declared' if declared else 'not declared':13s} {verdict}", flush=True)
        if declared and not ok:
            wrong.append(version)
    if wrong:
        print(f"requires-python declares {wrong}, where the pinned constraints do not resolve: narrow it "
              "in pyproject.toml (and the README)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
