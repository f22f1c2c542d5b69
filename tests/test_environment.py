"""environment.yml, pyproject.toml and requirements/constraints.txt name the same tested versions."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
ENVIRONMENT = REPO / "environment.yml"

#: conda-forge package names that differ from the PyPI ones
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
#: entries of environment.yml that are not Python packages of the project
NOT_PINNED_IN_CONSTRAINTS = {"python", "pip"}
EXTRAS = ("lessons", "dev")


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints line not pinned with ==: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{name} pinned twice in {CONSTRAINTS.name}"
        pins[name] = Version(specs[0].version)
    return pins


def _load_environment() -> dict:
    if not ENVIRONMENT.is_file():
        pytest.fail(f"{ENVIRONMENT.name} is missing from the repository root")
    env = yaml.safe_load(ENVIRONMENT.read_text())
    assert isinstance(env, dict) and isinstance(env.get("dependencies"), list), "environment.yml needs dependencies:"
    return env


def _environment() -> tuple[dict[str, str | None], dict[str, str | None]]:
    """``(conda, pip)``: package name (PyPI spelling) -> version given there, or None."""
    env = _load_environment()
    conda: dict[str, str | None] = {}
    pip: dict[str, str | None] = {}
    pip_lists = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"unexpected mapping in dependencies: {dep}"
            pip_lists.append(dep["pip"])
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:(==?)([^=\s]+))?", str(dep).strip())
        assert m, f"conda dependency {dep!r} is not written as name=version or name==version"
        name = canonicalize_name(CONDA_TO_PYPI.get(m.group(1).lower(), m.group(1)))
        assert name not in conda, f"{name} listed twice in {ENVIRONMENT.name}"
        conda[name] = m.group(3)
    assert len(pip_lists) <= 1, "more than one pip: section"
    for line in pip_lists[0] if pip_lists else []:
        line = str(line).strip()
        if line.startswith("-e") or line.startswith("--"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) <= 1 and all(s.operator == "==" for s in specs), f"pip line {line!r} is not name==version"
        name = canonicalize_name(req.name)
        assert name not in pip, f"{name} listed twice in the pip section"
        pip[name] = specs[0].version if specs else None
    return conda, pip


def test_constraints_are_all_pinned():
    pins = _constraints()
    assert len(pins) > 20


@pytest.mark.parametrize("req", _pyproject_requirements(), ids=lambda r: r.name)
def test_pyproject_dependency_pinned_within_range(req):
    pins = _constraints()
    name = canonicalize_name(req.name)
    assert name in pins, f"{req.name} from pyproject.toml is not pinned in {CONSTRAINTS.name}"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"{req.name}=={pins[name]} in {CONSTRAINTS.name} is outside pyproject's range {req.specifier}"
    )


def test_torch_pinned_to_2_13():
    assert _constraints()["torch"] == Version("2.13.0")
    conda, pip = _environment()
    assert {**conda, **pip}["torch"] == "2.13.0"


def test_environment_file_shape():
    env = _load_environment()
    assert isinstance(env.get("name"), str) and env["name"]
    assert env.get("channels") == ["conda-forge"]
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(re.fullmatch(r"python==?3\.1\d", d) for d in deps), "environment.yml must pin python"
    assert "pip" in [d.split("=")[0] for d in deps]
    pip_section = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_section and "-e ." in [str(x).strip() for x in pip_section[0]], "the package itself: -e ."


def test_environment_names_every_pyproject_dependency():
    conda, pip = _environment()
    both = set(conda) & set(pip)
    assert not both, f"listed both as conda and pip packages: {sorted(both)}"
    named = set(conda) | set(pip)
    missing = sorted({canonicalize_name(r.name) for r in _pyproject_requirements()} - named)
    assert not missing, f"{ENVIRONMENT.name} does not name {missing}"


def test_environment_versions_equal_constraints():
    pins = _constraints()
    conda, pip = _environment()
    wrong = []
    for name, version in {**conda, **pip}.items():
        if name in NOT_PINNED_IN_CONSTRAINTS:
            continue
        assert version is not None, f"{name} in {ENVIRONMENT.name} has no version: pin it as in {CONSTRAINTS.name}"
        assert name in pins, f"{name} in {ENVIRONMENT.name} is not pinned in {CONSTRAINTS.name}"
        if Version(version) != pins[name]:
            wrong.append(f"{name}: {version} != {pins[name]}")
    assert not wrong, f"{ENVIRONMENT.name} disagrees with {CONSTRAINTS.name}: {wrong}"
