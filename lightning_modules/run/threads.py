"""The number of torch threads a run uses (the top-level ``threads`` setting).

Measured in ``benchmarks/threads.py`` (``docs/results.md``): the models this project trains and
certifies on a CPU are small, and a thread that waits for a core another process holds stalls
every small operation (torch's OpenMP threads meet at a barrier after each one). On two shared
cores, two threads spent 2.4 (one other busy process) to 17 times (load 8) longer certifying
than one; on idle cores, one thread spent at most 1.8 times longer than two.
``auto`` therefore runs only as many threads as there are cores left free by other processes,
sampled from ``/proc/stat`` when the run starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_info

from smoothcert.errors import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, SLURM, containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times(cores: set[int]) -> tuple[float, float]:
    """Idle and total jiffies of ``cores``, summed, from ``/proc/stat`` (Linux)."""
    idle = total = 0.0
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
                continue
            values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq soft steal
            idle += values[3] + values[4]
            total += sum(values)
    return idle, total


def busy_cores(window: float = 0.25) -> float:
    """How many of this process's cores other processes keep busy now: the busy share of the
    affinity cores over ``window`` seconds (``/proc/stat``), read while this process sleeps.

    Sampled now rather than read from the 1-minute load average, which still counts a run that
    has just ended: back-to-back runs on idle cores would otherwise get one thread. Where
    ``/proc/stat`` cannot be read (not Linux), the 1-minute load average; 0 where neither is
    known."""
    try:
        cores = set(os.sched_getaffinity(0))
        idle0, total0 = _cpu_times(cores)
        time.sleep(window)
        idle1, total1 = _cpu_times(cores)
        if total1 > total0:
            return len(cores) * (1.0 - (idle1 - idle0) / (total1 - total0))
    except (AttributeError, OSError, ValueError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def auto_threads(processes: int = 1, cores: int | None = None, load: float | None = None) -> int:
    """The cores other processes leave free, shared among this run's ``processes`` (DDP on one
    machine), at least 1: ``max(1, (cores - round(load)) // processes)``."""
    cores = usable_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    free = min(cores, max(0, cores - round(load)))
    return max(1, free // max(1, processes))


def choose_threads(
    setting: object, processes: int = 1, environ: Mapping[str, str] = os.environ
) -> tuple[int | None, str]:
    """The thread count for ``threads=setting`` and why: an integer >= 1 forces it; ``auto``
    follows ``OMP_NUM_THREADS`` when it is set, else ``auto_threads``; ``None`` leaves torch's
    default (None, ...). Anything else is a one-line ConfigError."""
    if setting is None:
        return None, "torch's default (threads=null)"
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        if environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            count = int(environ["OMP_NUM_THREADS"])
            if count >= 1:
                return count, "auto: OMP_NUM_THREADS is set"
        cores, load = usable_cores(), busy_cores()
        count = auto_threads(processes, cores, load)
        share = f", shared by {processes} processes" if processes > 1 else ""
        return count, f"auto: {cores} usable cores, {load:.2f} busy with other work{share}"
    text = str(setting).strip()
    if isinstance(setting, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"threads={setting} must be auto, null (torch's default) or a whole number >= 1: "
            "use threads=auto, or e.g. threads=1"
        )
    return int(text), "threads setting"


def processes_per_machine(trainer: DictConfig | None) -> int:
    """How many processes the trainer starts on this machine (its ``devices``, 1 if unknown)."""
    devices = trainer.get("devices", 1) if trainer is not None else 1
    if isinstance(devices, int) and devices > 1:
        return devices
    if not isinstance(devices, int | str) and devices is not None:
        return max(1, len(list(devices)))  # a list of device indices
    return 1


def apply_threads(cfg: DictConfig) -> int:
    """Sets torch's intra-op threads from ``cfg.threads`` (before any work; logged once) and
    exports ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` so that processes this run starts (Lightning's
    DDP launcher, which would otherwise pick its own count, and data workers) inherit it.
    Returns the thread count in use."""
    processes = processes_per_machine(cfg.get("trainer"))
    count, why = choose_threads(cfg.get("threads", "auto"), processes)
    if count is not None:
        torch.set_num_threads(count)
        for name in THREAD_VARIABLES:
            os.environ[name] = str(count)
    rank_zero_info(f"torch threads: {torch.get_num_threads()} ({why})")
    return torch.get_num_threads()
