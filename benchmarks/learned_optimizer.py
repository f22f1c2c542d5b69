"""Does the learned optimiser beat tuned hand-designed ones on held-out random quadratics?

The set-up of Andrychowicz et al. (2016, section 3.1), at CPU scale: functions ``||W theta - y||^2`` with
10 parameters; a coordinate-wise 2 x 20 LSTM meta-trained by truncated back-propagation through time
(unrolls of 20 steps, horizon 100, second derivatives dropped); SGD, momentum (0.9), RMSprop and Adam,
each with its learning rate tuned on training functions over a log grid (``LR_GRID``: 1e-4 to 10^1.5,
four per decade).  Every number is on 100 held-out functions: the mean loss after 100 steps ± the
half-width of its 95 % confidence interval, the median, and the paired difference to the learned
optimiser (same functions, problem by problem).  The seeds and sizes are those of lesson 07
(``metalearn_lite/lessons/lesson07.py``).

    python benchmarks/learned_optimizer.py                 # train (about 3 CPU minutes), then evaluate
    python benchmarks/learned_optimizer.py --save-as metalearn_lite/data/checkpoints/learned-optimizer-quadratic.pt
    python benchmarks/learned_optimizer.py --load metalearn_lite/data/checkpoints/learned-optimizer-quadratic.pt
      (evaluate only)

Target: the learned optimiser's mean loss at step 100 below the best hand-designed optimiser's; training
at most 5 CPU minutes.  The script also prints the same table after ``--long`` steps (default 500),
five times the horizon the optimiser was trained for, with the rates still tuned for 100 steps.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from metalearn_lite.evaluation import mean_ci
from metalearn_lite.lessons.lesson07 import (
    HORIZON,
    LEARNED,
    comparison_table,
    load_learned_optimizer,
    optimizers,
    problems,
    run_all,
    save_learned_optimizer,
    train_learned_optimizer,
    tune_baselines,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500, help="meta-training iterations (128 functions each)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's rate for the LSTM's weights")
    parser.add_argument("--seed", type=int, default=0, help="seed of the LSTM's initial weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time = wall time when idle)")
    parser.add_argument("--long", type=int, default=500, help="also evaluate after this many steps (0: skip)")
    parser.add_argument("--load", help="evaluate this saved optimiser instead of training one")
    parser.add_argument("--save-as", help="write the trained optimiser here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.process_time()
    tuned = tune_baselines(problems("quadratic", "tune"))
    print(f"learning rates tuned on {problems('quadratic', 'tune').n} training functions, {HORIZON} steps, "
          f"in {(time.process_time() - start) / 60:.2f} CPU minutes: "
          + ", ".join(f"{k} {v.lr:.3g}{' (edge of the grid!)' if v.on_edge else ''}" for k, v in tuned.items()))

    if args.load:
        lstm = load_learned_optimizer(args.load)
        print(f"loaded {args.load}: {lstm.command}")
        wall, cpu, best = lstm.minutes, lstm.cpu_minutes, lstm.best_iteration
    else:
        lstm, result = train_learned_optimizer(args.iterations, seed=args.seed, lr=args.lr, progress=True)
        wall, cpu, best = result.minutes, result.cpu_minutes, result.best_iteration
        if args.save_as:
            command = "python " + " ".join(["benchmarks/learned_optimizer.py", *(argv if argv is not None else
                                                                                   sys.argv[1:])])
            save_learned_optimizer(args.save_as, lstm, result, command, args.seed)
            print(f"saved {args.save_as}")
    print(f"training: {cpu:.2f} CPU minutes ({wall:.2f} wall-clock minutes, {args.threads} thread(s)); "
          f"weights kept from iteration {best} (best validation)")

    test = problems("quadratic", "test")
    steps = max(HORIZON, args.long)
    curves = run_all(test, optimizers(lstm, tuned), steps)
    print(f"\n{test.n} held-out quadratics, step {HORIZON}:\n")
    print(comparison_table(curves, HORIZON, tuned))
    best_label = min(tuned, key=lambda k: float(curves[k][HORIZON].mean()))
    ours, theirs = mean_ci(curves[LEARNED][HORIZON]), mean_ci(curves[best_label][HORIZON])
    diff = mean_ci(curves[best_label][HORIZON].double() - curves[LEARNED][HORIZON].double())
    met = ours[0] < theirs[0]
    print(f"\ntarget (mean at step {HORIZON} below the best hand-designed, {best_label}): "
          f"{ours[0]:.4f} ± {ours[1]:.4f} vs {theirs[0]:.4f} ± {theirs[1]:.4f}: {'MET' if met else 'MISSED'}; "
          f"paired difference {diff[0]:+.4f} ± {diff[1]:.4f} "
          f"({'interval excludes 0' if abs(diff[0]) > diff[1] else 'interval includes 0'})")
    print(f"target (training at most 5 CPU minutes): {cpu:.2f}: {'MET' if cpu <= 5 else 'MISSED'}")
    if args.long > HORIZON:
        print(f"\nthe same functions after {args.long} steps (rates tuned for {HORIZON}):\n")
        print(comparison_table(curves, args.long, tuned))
    return 0


if __name__ == "__main__":
    sys.exit(main())
