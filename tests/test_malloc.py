"""glibc malloc tuning: never at import, once when training or evaluation starts, and its opt-out variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from metalearn_lite import _malloc

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")

#: a fresh interpreter that records every mallopt call made through ctypes, then runs the code it is given
SPY = """
import ctypes, json
calls = []
class Spy(ctypes.CDLL):
    def __getattr__(self, name):
        fn = super().__getattr__(name)
        if name != "mallopt":
            return fn
        def mallopt(*args):
            calls.append(args)
            return fn(*args)
        setattr(self, name, mallopt)  # CDLL caches the raw function on first access; keep the spy instead
        return mallopt
ctypes.CDLL = Spy
import metalearn_lite as ml
after_import = list(calls)
{work}
print(json.dumps({{"import": after_import, "work": calls[len(after_import):], "tuned": ml.malloc_tuned()}}))
"""

TRAIN = """
import torch
x = torch.rand(40, 1, 8, 8); y = torch.arange(8).repeat_interleave(5)
tasks = ml.EpisodeSampler(x, y, ways=2, shots=1, queries=1, seed=0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
import tempfile
ml.train(ml.ProtoNet(net), tasks, steps=1, out_dir=tempfile.mkdtemp(), progress=False)
"""

EVALUATE = """
import torch
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
ml.evaluate(ml.ProtoNet(net), torch.rand(8, 5, 1, 8, 8), ways=2, shots=1, queries=1, episodes=2)
"""


def spy(work: str, **env: str) -> dict:
    import json

    full = {k: v for k, v in os.environ.items() if k != "METALEARN_LITE_MALLOC_TUNING"}
    full.update(env, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SPY.format(work=work)], env=full, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@linux_only
def test_import_does_not_call_mallopt_training_does():
    seen = spy(TRAIN)
    assert seen["import"] == []  # importing the package leaves the process's allocator alone
    assert [args[0] for args in seen["work"]] == [_malloc.M_MMAP_THRESHOLD, _malloc.M_TRIM_THRESHOLD]
    assert seen["tuned"] is True


@linux_only
def test_evaluate_tunes_once_and_the_variable_opts_out():
    seen = spy(EVALUATE + EVALUATE)
    assert seen["import"] == [] and len(seen["work"]) == 2 and seen["tuned"] is True  # once, not per call
    off = spy(EVALUATE, METALEARN_LITE_MALLOC_TUNING="0")
    assert off["work"] == [] and off["tuned"] is False


@linux_only
def test_tune_malloc_applies_on_linux():
    if os.environ.get("METALEARN_LITE_MALLOC_TUNING") == "0":
        pytest.skip("tuning switched off in this environment")
    assert _malloc.tune_malloc() is True  # idempotent


def test_tune_malloc_respects_env(monkeypatch):
    monkeypatch.setenv("METALEARN_LITE_MALLOC_TUNING", "0")
    assert _malloc.tune_malloc() is False


def test_tune_malloc_off_other_platforms(monkeypatch):
    monkeypatch.delenv("METALEARN_LITE_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(_malloc.sys, "platform", "darwin")
    assert _malloc.tune_malloc() is False
