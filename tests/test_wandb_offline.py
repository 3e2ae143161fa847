"""End to end: ``train.py logger=wandb`` without wandb credentials writes a complete offline run.

One tiny training run (``debug=default``) in a subprocess, with no WANDB_* variables and an empty
HOME (no netrc, no wandb settings), so wandb must choose offline mode on its own and never prompt.
The run's binary transaction log (``run-*.wandb``) is then decoded with ``tests/wandb_records.py``
and checked against the TSV files the certification callback wrote next to it.

How wandb 0.31 stores what the callback logs, offline:

* scalars: one history row (``record.history``) and the summary (``record.summary``);
* a ``wandb.Table``: its JSON under ``files/media/table/...table.json``; history and summary hold a
  reference ``{"_type": "table-file", "path": ..., "sha256": ..., "nrows": ..., ...}``;
* a ``wandb.plot.line`` chart at key K: not in the history at all. Its Vega panel spec goes into the
  run config at ``_wandb.visualize[K]`` and its table is logged as the history key ``K + "_table"``
  (here ``cert/certified_accuracy_table``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from smoothcert.records import read_records as read_cert_records
from tests.wandb_records import (
    FILE_HEADER,
    FILE_IDENT,
    FILE_MAGIC,
    FILE_VERSION,
    config_dict,
    history_items,
    read_records,
    summary_items,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
SIGMA = 0.25
RADII = (0.0, 0.25, 0.5, 0.75, 1.0)  # conf/certify/cohen.yaml
NUM_EXAMPLES = 6  # conf/debug/default.yaml
TABLE_KEY = "cert/certified_accuracy_table"
CHART_KEY = "cert/certified_accuracy"
SCALAR_KEYS = (
    *(f"cert/acc@{r:.2f}" for r in RADII),
    "cert/acr",
    "cert/abstain",
    "cert/clean_acc",
    "cert/num_examples",
)
# What wandb prints when it would ask for an API key or a mode (it must not, without credentials).
PROMPTS = ("Enter your choice", "Create a W&B account", "Use an existing W&B account", "API key")


@dataclass
class TrainRun:
    out: Path  # hydra.run.dir
    returncode: int | None
    timed_out: bool
    elapsed: float
    output: str  # stdout and stderr together


def _run_offline(script: str, out: Path, home: Path, *overrides: str) -> TrainRun:
    """Runs SCRIPT with logger=wandb and no wandb credentials or settings of any kind."""
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WANDB_") and k != "NETRC" and not k.startswith("XDG_")
    }
    env["HOME"] = str(home)  # no ~/.netrc, no ~/.config/wandb/settings
    command = [sys.executable, script, "debug=default", "logger=wandb", f"hydra.run.dir={out}"]
    start = time.monotonic()
    proc = subprocess.Popen(
        [*command, *overrides],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,  # a prompt would read EOF and fail, never hang
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout can stop wandb's service process too
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        timed_out = True
    return TrainRun(out, proc.returncode, timed_out, time.monotonic() - start, output)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> TrainRun:
    base = tmp_path_factory.mktemp("wandb_offline")
    # log_checkpoint: the checkpoints as artifacts too (off by default; see the test below).
    return _run_offline("train.py", base / "run", base / "home", "logger.wandb.log_checkpoint=true")


@pytest.fixture(scope="module")
def run_dir(train_run: TrainRun) -> Path:
    """The single offline run directory (fails the dependent tests if train.py failed)."""
    if train_run.timed_out or train_run.returncode != 0:
        pytest.fail(
            f"train.py failed (exit {train_run.returncode}, timed out: {train_run.timed_out}):\n"
            + train_run.output[-4000:]
        )
    runs = sorted((train_run.out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline run under {train_run.out / 'wandb'}: {runs}"
    return runs[0]


@pytest.fixture(scope="module")
def wandb_file(run_dir: Path) -> Path:
    files = sorted(run_dir.glob("run-*.wandb"))
    assert len(files) == 1, f"expected one run-*.wandb file in {run_dir}: {files}"
    return files[0]


@pytest.fixture(scope="module")
def history(wandb_file: Path) -> list[dict[str, Any]]:
    return history_items(wandb_file)


@pytest.fixture(scope="module")
def summary(wandb_file: Path) -> dict[str, Any]:
    return summary_items(wandb_file)


@pytest.fixture(scope="module")
def config(wandb_file: Path) -> dict[str, Any]:
    return config_dict(wandb_file)


@pytest.fixture(scope="module")
def expected_scalars(train_run: TrainRun, run_dir: Path) -> dict[str, float]:
    """The cert/* scalars recomputed by hand from certify.tsv (not with smoothcert.metrics)."""
    _, records = read_cert_records(train_run.out / "certify.tsv")
    n = len(records)
    assert n == NUM_EXAMPLES
    expected = {
        f"cert/acc@{r:.2f}": sum(1 for x in records if x.correct == 1 and x.radius >= r) / n
        for r in RADII
    }
    expected["cert/acr"] = sum(x.radius for x in records if x.correct == 1) / n
    expected["cert/abstain"] = sum(1 for x in records if x.predict == -1) / n
    expected["cert/clean_acc"] = sum(1 for x in records if x.correct == 1) / n
    expected["cert/num_examples"] = float(n)
    return expected


@pytest.fixture(scope="module")
def curve_rows(train_run: TrainRun, run_dir: Path) -> tuple[list[str], list[list[float]]]:
    lines = (train_run.out / "certified_accuracy.tsv").read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [[float(v) for v in line.split("\t")] for line in lines[1:]]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def test_train_exits_zero_offline_without_prompting(train_run: TrainRun) -> None:
    assert not train_run.timed_out, f"train.py ran past {TIMEOUT_S} s:\n{train_run.output[-4000:]}"
    assert train_run.returncode == 0, train_run.output[-4000:]
    assert train_run.elapsed < TIMEOUT_S
    assert "syncing is set to `offline`" in train_run.output
    for prompt in PROMPTS:
        assert prompt not in train_run.output, f"wandb prompted: {prompt!r}"


def test_exactly_one_offline_run_directory(train_run: TrainRun, run_dir: Path) -> None:
    runs = [p.name for p in (train_run.out / "wandb").iterdir() if "run-" in p.name]
    assert runs == [run_dir.name], runs  # no online run-* directory, no second offline run
    assert (run_dir / "files").is_dir()


def test_wandb_file_is_a_complete_transaction_log(wandb_file: Path) -> None:
    head = wandb_file.read_bytes()[: FILE_HEADER.size]
    assert FILE_HEADER.unpack(head) == (FILE_IDENT, FILE_MAGIC, FILE_VERSION)
    records = list(read_records(wandb_file, strict=True))  # every checksum and chunk checked
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header"
    assert kinds[-1] == "exit" and records[-1].exit.exit_code == 0
    nums = [r.num for r in records]
    assert nums == list(range(1, len(records) + 1))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "smoothcert"
    assert run.display_name == f"train-digits-sigma{SIGMA}"
    assert run.telemetry.feature.offline


def test_history_scalars_match_certify_tsv(
    history: list[dict[str, Any]], expected_scalars: dict[str, float]
) -> None:
    rows = [row for row in history if any(k in row for k in SCALAR_KEYS)]
    assert len(rows) == 1, f"cert scalars in {len(rows)} history rows"
    (row,) = rows
    assert sorted(k for k in row if k.startswith("cert/")) == sorted(SCALAR_KEYS)
    for key in ("cert/acc@0.25", "cert/acr", "cert/abstain", "cert/clean_acc", *SCALAR_KEYS):
        assert _close(row[key], expected_scalars[key]), (key, row[key], expected_scalars[key])


def test_summary_scalars_match_certify_tsv(
    summary: dict[str, Any], expected_scalars: dict[str, float]
) -> None:
    missing = [k for k in SCALAR_KEYS if k not in summary]
    assert not missing, f"not in the run summary: {missing}"
    for key in SCALAR_KEYS:
        assert _close(summary[key], expected_scalars[key]), (key, summary[key])


def test_certified_accuracy_table(
    wandb_file: Path,
    run_dir: Path,
    history: list[dict[str, Any]],
    summary: dict[str, Any],
    curve_rows: tuple[list[str], list[list[float]]],
) -> None:
    refs = [row[TABLE_KEY] for row in history if TABLE_KEY in row]
    assert len(refs) == 1, f"{TABLE_KEY} in {len(refs)} history rows"
    (ref,) = refs
    assert ref["_type"] == "table-file"
    table_file = run_dir / "files" / ref["path"]
    assert table_file.name.endswith(".table.json") and table_file.is_file(), ref["path"]
    content = table_file.read_bytes()
    assert ref["sha256"] == sha256(content).hexdigest()
    assert ref["size"] == len(content)

    columns, rows = curve_rows
    table = json.loads(content)
    assert columns == ["radius", "certified_accuracy"]
    assert table["columns"] == columns
    assert table["data"] == rows  # both written with repr(float): exact
    assert (ref["nrows"], ref["ncols"]) == (len(rows), 2)
    assert summary.get(TABLE_KEY, {}).get("path") == ref["path"]

    # Listed in a files record, so `wandb sync` uploads it.
    listed = {
        f.path
        for r in read_records(wandb_file)
        if r.WhichOneof("record_type") == "files"
        for f in r.files.files
    }
    assert ref["path"] in listed


def test_certified_accuracy_line_chart(
    config: dict[str, Any], history: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    # wandb 0.31 keeps a custom chart out of the history: the panel spec is in the config.
    assert all(CHART_KEY not in row for row in history)
    charts = config.get("_wandb", {}).get("visualize", {})
    assert CHART_KEY in charts, f"no custom chart {CHART_KEY} in config _wandb.visualize: {charts}"
    chart = charts[CHART_KEY]
    assert chart["panel_type"] == "Vega2"
    panel = chart["panel_config"]
    assert panel["panelDefId"] == "wandb/line/v0"
    assert panel["fieldSettings"]["x"] == "radius"
    assert panel["fieldSettings"]["y"] == "certified_accuracy"
    assert panel["stringSettings"]["title"] == f"Cohen CERTIFY, gaussian sigma={SIGMA}, l2 radius"
    table_keys = [
        arg["value"]
        for query in panel["userQuery"]["queryFields"]
        for field in query["fields"]
        if field["name"] == "summaryTable"
        for arg in field["args"]
        if arg["name"] == "tableKey"
    ]
    # The chart reads its data from the summary table it was logged with.
    assert table_keys == [TABLE_KEY]
    assert summary[TABLE_KEY]["_type"] == "table-file"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_resolved_config_logged(config: dict[str, Any], train_run: TrainRun) -> None:
    assert config["sigma"] == SIGMA
    assert config["seed"] == 0
    certify = config["certify"]
    assert certify["_target_"] == "callbacks.certification.cohen.CohenCertification"
    assert certify["sigma"] == SIGMA
    assert (certify["n0"], certify["n"], certify["num_examples"]) == (100, 10000, NUM_EXAMPLES)
    assert certify["alpha"] == 0.001
    assert certify["radii"] == list(RADII)
    assert certify["output_dir"] == str(train_run.out)
    assert config["logger"]["wandb"]["save_dir"] == str(train_run.out)
    assert config["trainer"]["max_epochs"] == 1
    # Resolved: no interpolation or missing value left (wandb's own chart queries, under
    # _wandb, legitimately contain "${runSets}").
    user = {k: v for k, v in config.items() if k != "_wandb"}
    unresolved = [s for s in _strings(user) if "${" in s or s == "???"]
    assert not unresolved, unresolved


def test_certify_py_logs_the_table_too(train_run: TrainRun, tmp_path: Path) -> None:
    """certify.py logs at trainer step 0 while wandb's own step is ahead: nothing may be dropped."""
    ckpt = train_run.out / "checkpoints" / "last.ckpt"
    run = _run_offline("certify.py", tmp_path / "run", tmp_path / "home", f"ckpt_path={ckpt}")
    assert run.returncode == 0, run.output[-4000:]
    assert "will be ignored" not in run.output
    (wandb_file,) = sorted((run.out / "wandb").glob("offline-run-*/run-*.wandb"))
    rows = history_items(wandb_file)
    assert any(TABLE_KEY in row for row in rows)
    assert any("cert/acr" in row for row in rows)
    assert TABLE_KEY in summary_items(wandb_file)


def _artifacts(wandb_file: Path, kind: str) -> list[Any]:
    return [
        r.artifact
        for r in read_records(wandb_file)
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == kind
    ]


def _md5_b64(path: Path) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_curve_png_logged_as_an_image(
    train_run: TrainRun, run_dir: Path, history: list[dict[str, Any]]
) -> None:
    refs = [
        row["cert/certified_accuracy_png"]
        for row in history
        if "cert/certified_accuracy_png" in row
    ]
    assert len(refs) == 1, refs
    (ref,) = refs
    assert ref["_type"] == "image-file" and ref["format"] == "png"
    logged = (run_dir / "files" / ref["path"]).read_bytes()
    assert logged == (train_run.out / "certified_accuracy.png").read_bytes()  # the same figure


def test_per_example_table_is_certify_tsv(
    train_run: TrainRun, run_dir: Path, history: list[dict[str, Any]]
) -> None:
    refs = [row["cert/records/certify"] for row in history if "cert/records/certify" in row]
    assert len(refs) == 1, refs
    table = json.loads((run_dir / "files" / refs[0]["path"]).read_text())
    assert table["columns"] == ["idx", "label", "predict", "radius", "correct", "time"]
    _, records = read_cert_records(train_run.out / "certify.tsv")
    assert len(table["data"]) == len(records) == NUM_EXAMPLES
    for row, record in zip(table["data"], records, strict=True):
        assert row[:3] == [record.idx, record.label, record.predict]
        assert _close(row[3], record.radius) and row[4] == record.correct


def test_certify_tsv_and_checkpoints_are_artifacts(train_run: TrainRun, wandb_file: Path) -> None:
    (records,) = _artifacts(wandb_file, "certification")
    (entry,) = records.manifest.contents
    assert entry.path == "certify.tsv"
    assert entry.digest == _md5_b64(train_run.out / "certify.tsv")
    assert json.loads(records.metadata)["certify.tsv"]["n"] == "10000"  # the file's header
    # logger.wandb.log_checkpoint=true: the run's checkpoints, byte for byte.
    logged = {
        entry.digest for a in _artifacts(wandb_file, "model") for entry in a.manifest.contents
    }
    on_disk = {_md5_b64(p) for p in (train_run.out / "checkpoints").glob("*.ckpt")}
    assert logged == on_disk and len(on_disk) == 2


def test_checkpoints_are_not_artifacts_by_default() -> None:
    from lightning_modules.run.wandb_setup import make_wandb_logger

    config = OmegaConf.load(REPO / "conf" / "logger" / "wandb.yaml")
    assert config.wandb.log_checkpoint is False
    assert make_wandb_logger(str(REPO / "outputs"), offline=True)._log_model is False


def test_a_refused_run_leaves_no_wandb_run_and_ends_with_the_error(tmp_path: Path) -> None:
    """certify.num_examples beyond the split is refused in the callback's setup, after Lightning
    has started the wandb run: the run is removed and the error is the last line printed."""
    run = _run_offline(
        "train.py", tmp_path / "run", tmp_path / "home", "certify.num_examples=100000"
    )
    assert run.returncode == 2, run.output[-4000:]
    assert "Run data is saved locally" in run.output  # the logger had started
    lines = [line for line in run.output.splitlines() if line.strip()]
    assert lines[-1].startswith("smoothcert: error: certify.num_examples=100000"), lines[-5:]
    assert not (run.out / "wandb").exists(), list((run.out / "wandb").rglob("*"))
