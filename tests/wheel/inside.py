"""Run by ``run_wheel_test.py`` with the fresh environment's python, from a folder outside the repository.

Arguments: the repository's path (which the package must not come from) and the JSON list of shipped data
files.  Prints one line per check and, last, a JSON line with the time of the first evaluation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = time.monotonic()


def stamp() -> str:
    return f"[{time.monotonic() - T0:5.1f} s]"


import torch  # noqa: E402  (after the clock starts: importing torch is part of the cost)

import metalearn_lite as ml  # noqa: E402

repo, shipped = Path(sys.argv[1]).resolve(), json.loads(sys.argv[2])
where = Path(ml.__file__).resolve()
assert repo not in where.parents, f"metalearn_lite was imported from the repository ({where}), not from the wheel"
assert Path(sys.prefix) in where.parents, f"metalearn_lite comes from {where}, outside this environment"
assert repo not in Path.cwd().resolve().parents and Path.cwd().resolve() != repo
print(f"{stamp()} imported from the installed wheel ({where.parent.parent.name}/metalearn_lite)")

omniglot = ml.load_omniglot()
assert omniglot.images.shape == (242, 20, 1, 28, 28), omniglot.images.shape
test = ml.omniglot_split("test")
print(f"{stamp()} Omniglot: {len(omniglot)} characters; test split {len(test)}")

names = ml.available_pretrained()
expected = sorted(Path(f).stem for f in shipped if f.endswith(".pt"))
assert names == expected, f"available_pretrained() lists {names}; the package ships {expected}"
for name in names:
    model = ml.load_pretrained(name)
    assert not model.training and model.command, name
print(f"{stamp()} loaded all {len(names)} shipped models")

result = ml.evaluate(ml.load_pretrained("protonet-omniglot"), test.images, ways=5, shots=1, episodes=20)
first_evaluate_at = time.time()
assert result.mean > 0.8, f"the shipped ProtoNet scores {result} from the wheel"
print(f"{stamp()} evaluate from Python: protonet-omniglot {result}")

cli = subprocess.run([sys.executable, "-m", "metalearn_lite", "evaluate", "siamese-omniglot", "--episodes", "10",
                      "--device", "cpu"], capture_output=True, text=True, timeout=300)
assert cli.returncode == 0, cli.stderr
assert "siamese-omniglot on test:" in cli.stdout, cli.stdout
print(f"{stamp()} evaluate from the CLI: {cli.stdout.strip()}")
listed = subprocess.run([str(Path(sys.executable).parent / "metalearn-lite"), "list"], capture_output=True,
                        text=True, timeout=300)
assert listed.returncode == 0 and all(f"{n}:" in listed.stdout for n in names), listed.stdout + listed.stderr
print(f"{stamp()} metalearn-lite list (the console script) names every shipped model")

with tempfile.TemporaryDirectory() as scratch:
    x, y, classes = ml.image_folder(ml.make_shapes(Path(scratch) / "shapes", classes=8, per_class=6, size=28))
    tasks = ml.EpisodeSampler(x, y, ways=3, shots=1, queries=2, seed=0)
    torch.manual_seed(0)
    run = ml.train(ml.ProtoNet(ml.Conv4(hidden=16)), tasks, steps=5, val_every=5, save_every=5, progress=False,
                   out_dir=Path(scratch) / "run")
    assert run.step == 5 and run.best_path.is_file()
    assert len((Path(scratch) / "run" / "history.csv").read_text().splitlines()) == 1 + 5  # header + a row a step
print(f"{stamp()} trained a ProtoNet on {len(classes)} generated shape classes for {run.step} steps")
print(json.dumps({"first_evaluate_at": first_evaluate_at}))
