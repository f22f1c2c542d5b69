"""``import metalearn_lite`` stays light: scipy, scikit-learn, matplotlib, ipywidgets and the lessons load only
when a function that needs them runs (``benchmarks/import_time.py`` measures the time; no timing here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("scipy", "sklearn", "matplotlib", "ipywidgets", "metalearn_lite.lessons")


def fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter importing this checkout; it prints one JSON line, returned here."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


LOADED = "[h for h in {heavy!r} if h in sys.modules or any(m.startswith(h + '.') for m in sys.modules)]"


def test_import_does_not_load_heavy_modules():
    got = fresh(f"import sys, json, metalearn_lite\nprint(json.dumps({{'file': metalearn_lite.__file__, "
                f"'loaded': {LOADED.format(heavy=HEAVY)}}}))")
    assert Path(got["file"]).resolve().is_relative_to(REPO), "the test must import this checkout"
    assert got["loaded"] == [], f"import metalearn_lite pulled {got['loaded']}; import them inside the functions"


@pytest.mark.parametrize("module", ["metalearn_lite.training", "metalearn_lite.cli", "metalearn_lite.recipes"])
def test_submodules_do_not_load_heavy_modules(module):
    got = fresh(f"import sys, json, {module}\nprint(json.dumps({LOADED.format(heavy=HEAVY)}))")
    assert got == []


def test_lazy_scipy_still_serves_mean_ci():
    """mean_ci imports scipy on its first call and gives Student's t interval (t_{0.975, 3} = 3.1824)."""
    got = fresh("import sys, json, metalearn_lite as ml\nbefore = 'scipy' in sys.modules\n"
                "mean, half = ml.mean_ci([0.0, 1.0, 0.0, 1.0])\n"
                "print(json.dumps([before, 'scipy' in sys.modules, mean, half]))")
    before, after, mean, half = got
    assert (before, after) == (False, True)
    assert mean == 0.5
    assert half == pytest.approx(3.182446305284263 * (1 / 3) ** 0.5 / 2, rel=1e-12)


def test_lazy_sklearn_still_serves_linear_probe():
    """LinearProbe's logistic regression loads scikit-learn only when it fits."""
    got = fresh(
        "import sys, json, torch, metalearn_lite as ml\n"
        "torch.manual_seed(0)\n"
        "probe = ml.LinearProbe(None)\n"
        "before = 'sklearn' in sys.modules\n"
        "sx = torch.cat([torch.randn(3, 4) + 4, torch.randn(3, 4) - 4]); sy = torch.tensor([0] * 3 + [1] * 3)\n"
        "pred = probe.predict(sx, sy, torch.stack([torch.full((4,), 4.0), torch.full((4,), -4.0)]))\n"
        "print(json.dumps([before, 'sklearn' in sys.modules, pred.tolist()]))")
    assert got == [False, True, [0, 1]]
