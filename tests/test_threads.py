"""The ``threads`` setting: auto leaves the cores other processes use, a number forces it, bad
values are one line, and the count chosen is the one torch uses during the run."""

from __future__ import annotations

import os

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning import Callback

from conftest import TINY, run_script
from lightning_modules.run import threads
from lightning_modules.run.runner import build_run
from smoothcert.errors import ConfigError


@pytest.mark.parametrize(
    "cores,load,processes,expected",
    [(2, 0.2, 1, 2), (2, 0.6, 1, 1), (2, 1.4, 1, 1), (2, 7, 1, 1), (16, 3.4, 1, 13), (16, 0, 4, 4)],
)
def test_auto_leaves_the_busy_cores_and_shares_the_rest(cores, load, processes, expected):
    assert threads.auto_threads(processes, cores, load) == expected


def test_auto_reads_affinity_and_load_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 2.7)
    assert threads.choose_threads("auto", environ={})[0] == 5
    assert threads.choose_threads("auto", processes=2, environ={})[0] == 2
    assert threads.choose_threads("auto", environ={"OMP_NUM_THREADS": "3"})[0] == 3
    assert threads.choose_threads(4, environ={"OMP_NUM_THREADS": "3"})[0] == 4  # a number wins
    assert threads.choose_threads(None, environ={})[0] is None  # torch's default


def test_busy_cores_is_the_busy_share_of_this_process_cores_over_the_window(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    samples = iter([(100.0, 200.0), (150.0, 400.0)])  # idle, total jiffies: 50 of 200 idle
    monkeypatch.setattr(threads, "_cpu_times", lambda _: next(samples))
    monkeypatch.setattr(threads.time, "sleep", lambda _: None)
    assert threads.busy_cores() == pytest.approx(cores * 0.75)


def test_busy_cores_reads_this_machine():
    assert 0.0 <= threads.busy_cores(0.05) <= len(os.sched_getaffinity(0)) + 1e-9
    idle, total = threads._cpu_times(set(os.sched_getaffinity(0)))
    assert 0 < idle <= total


@pytest.mark.parametrize("bad", [0, -2, "abc", 1.5, True, "2x"])
def test_bad_values_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match=rf"threads={bad} must be auto") as info:
        threads.choose_threads(bad)
    assert "\n" not in str(info.value)


def test_processes_per_machine_follows_the_trainers_devices():
    trainer = OmegaConf.create
    assert threads.processes_per_machine(trainer({"devices": 4})) == 4
    assert threads.processes_per_machine(trainer({"devices": [0, 1]})) == 2
    assert threads.processes_per_machine(trainer({"devices": "auto"})) == 1
    assert threads.processes_per_machine(None) == 1


class RecordThreads(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.seen.append(torch.get_num_threads())

    def on_train_end(self, trainer, pl_module) -> None:  # when certification runs
        self.seen.append(torch.get_num_threads())


@pytest.mark.slow
def test_the_setting_is_what_torch_uses_during_the_run(make_cfg, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # restored afterwards, like the variables below
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    try:
        cfg = make_cfg(*TINY, "threads=2")
        assert threads.apply_threads(cfg) == 2
        assert os.environ["OMP_NUM_THREADS"] == "2"  # what DDP's processes inherit
        run = build_run(cfg)
        probe = RecordThreads()
        run.trainer.callbacks.insert(0, probe)
        run.trainer.fit(run.module, datamodule=run.datamodule)
        assert probe.seen == [2, 2]
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_bad_value_stops_the_entry_points_in_one_line(tmp_path):
    for script, extra in (("train.py", []), ("certify.py", ["ckpt_path=missing.ckpt"])):
        result = run_script(script, *TINY, *extra, "threads=0", f"hydra.run.dir={tmp_path}")
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith("smoothcert: error: threads=0")
