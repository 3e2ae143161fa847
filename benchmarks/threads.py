"""Wall time of the real commands at 1, 2, torch's default and ``auto`` threads, side by side.

Each setting runs the same two commands as subprocesses, as a user runs them:

- ``certify``: ``python certify.py ckpt_path=<digits checkpoint> certify.num_examples=E
  logger=none threads=T`` (Cohen's CERTIFY, n0=100, n=10,000, on the bundled digits CNN);
- ``train``: ``python train.py trainer.max_epochs=K certify.num_examples=5 certify.n=1000
  logger=none threads=T`` (the default digits run, shortened).

``default`` is ``threads=null`` (torch's own choice: one thread per core); ``auto`` is the project's
default (``lightning_modules/run/threads.py``). ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are
removed from the environment of every run, so each setting means what it says. Repeats are
interleaved (1, 2, default, auto, 1, ...) so that a change in the machine's load hits every setting
alike; the table gives the median wall time (import and start-up included), the summed per-example
certification time of ``certify.tsv``, and each median as a ratio to the best setting's. The
1-minute load average is printed before every run and summarized per setting. ``--load K`` adds K
busy processes (pure Python loops) for the duration, to measure "under load" on an otherwise idle
machine.

Usage: ``python benchmarks/threads.py [--examples 20] [--epochs 3] [--repeats 2] [--load 0]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "tests" / "fixtures" / "pre_move" / "digits_last.ckpt"
SETTINGS = {"1": "1", "2": "2", "default": "null", "auto": "auto"}


def spin() -> None:
    while True:
        pass


def certification_seconds(tsv: Path) -> float:
    """The sum of the ``time`` column of a certify.tsv (0 if absent)."""
    if not tsv.exists():
        return 0.0
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if not line.startswith("#")]
    column = rows[0].index("time")
    return sum(float(row[column]) for row in rows[1:])


def run(command: list[str], out: Path) -> tuple[float, float, str]:
    """Wall seconds, certification seconds and the ``torch threads:`` line of one command."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *command, f"hydra.run.dir={out}"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    said = [line for line in done.stderr.splitlines() + done.stdout.splitlines()]
    threads = next((line for line in said if "torch threads:" in line), "torch threads: ?")
    return wall, certification_seconds(out / "certify.tsv"), threads.split("torch threads:")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20, help="certify.num_examples")
    parser.add_argument("--epochs", type=int, default=3, help="trainer.max_epochs of train")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load", type=int, default=0, help="busy processes to add")
    parser.add_argument("--only", choices=("certify", "train"), default=None)
    args = parser.parse_args()
    commands = {
        "certify": [
            "certify.py",
            f"ckpt_path={CHECKPOINT}",
            f"certify.num_examples={args.examples}",
            "logger=none",
        ],
        "train": [
            "train.py",
            f"trainer.max_epochs={args.epochs}",
            "certify.num_examples=5",
            "certify.n=1000",
            "logger=none",
        ],
    }
    if args.only:
        commands = {args.only: commands[args.only]}
    print(
        f"cores usable: {len(os.sched_getaffinity(0))} of {os.cpu_count()}, torch "
        f"{torch.__version__}, added busy processes: {args.load}, load average at start: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for process in spinners:
        process.start()
    times = {(c, s): [] for c in commands for s in SETTINGS}
    loads = {s: [] for s in SETTINGS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                # Rotate the order each repeat, so no setting always runs last (load drifts).
                shift = repeat % len(SETTINGS)
                order = list(SETTINGS.items())[shift:] + list(SETTINGS.items())[:shift]
                for name, command in commands.items():
                    for setting, value in order:
                        load = os.getloadavg()[0]
                        loads[setting].append(load)
                        out = Path(tmp) / f"{name}_{setting}_{repeat}"
                        wall, cert, said = run([*command, f"threads={value}"], out)
                        times[(name, setting)].append((wall, cert))
                        print(
                            f"  {name:8s} threads={value:5s} load {load:5.2f}: {wall:6.1f} s "
                            f"(certification {cert:6.1f} s; ran with{said})",
                            flush=True,
                        )
    finally:
        for process in spinners:
            process.kill()
    print(
        f"\nwall time of the command (median and best of {args.repeats} runs) and the summed "
        "per-example certification time (median); ratio = time / the best setting's time"
    )
    print(
        f"{'command':8s} {'threads':8s} {'load':>5s} {'median s':>8s} {'ratio':>6s} "
        f"{'best s':>7s} {'ratio':>6s} {'cert s':>7s} {'ratio':>6s}"
    )
    for name in commands:
        runs = {s: times[(name, s)] for s in SETTINGS}
        walls = {s: statistics.median(w for w, _ in runs[s]) for s in SETTINGS}
        bests = {s: min(w for w, _ in runs[s]) for s in SETTINGS}
        certs = {s: statistics.median(c for _, c in runs[s]) for s in SETTINGS}
        top_wall, top_best = min(walls.values()), min(bests.values())
        top_cert = min(certs.values()) or 1.0
        for s in SETTINGS:
            print(
                f"{name:8s} {s:8s} {statistics.mean(loads[s]):5.2f} {walls[s]:8.1f} "
                f"{walls[s] / top_wall:6.2f} {bests[s]:7.1f} {bests[s] / top_best:6.2f} "
                f"{certs[s]:7.1f} {certs[s] / top_cert:6.2f}"
            )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
