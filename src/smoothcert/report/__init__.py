"""Curves, ACR and Cohen et al.'s envelope table from certification TSV files.

    python -m smoothcert.report outputs/.../certify.tsv ref/noise_0.25/test/sigma_0.50 --out DIR

Reads ours and the reference implementation's files (``idx label predict radius correct time``;
time as seconds or ``H:MM:SS.ffffff``). A file's certification sigma comes from its ``# sigma:``
header, else from a ``sigma_0.50`` part of its path, else from a ``noise_0.25`` part, else
``--sigma``. Its training sigma comes from its ``# train_sigma:`` header, else from a ``noise_0.25``
part of its path: the reference repository's layout is
``noise_<training sigma>/test/sigma_<certification sigma>``.

Each run is labelled by ``--labels a,b,c``, else by the settings that differ between the runs
(``sigma=0.5, examples=200``), else by the parts of their paths that differ. The tables state
each run's protocol (dataset, n0, n, alpha, number of examples, from our header; ``-`` where a
file does not say); runs certified under different protocols are refused unless
``--allow-mixed``, and then the envelope names the best run's protocol setting at each radius.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smoothcert.metrics.certified import (
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
)
from smoothcert.records import CohenRecord, read_records

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_NUMBER = r"(\d+(?:\.\d+)?)"
# A path part (folder or file name) naming a noise level; not preceded by a letter, so that
# e.g. ``mysigma_1`` is not read as one.
_CERT_SIGMA_IN_PATH = re.compile(r"(?<![A-Za-z])sigma[_=-]?" + _NUMBER)
_TRAIN_SIGMA_IN_PATH = re.compile(r"(?<![A-Za-z])noise[_=-]?" + _NUMBER)


@dataclass
class Result:
    """One certification run: its label, certification and training sigma, and its records.

    ``settings`` are the run's values of the settings a sweep varied (e.g. ``{"certify.n":
    "1000"}``), empty for a lone file; ``source`` is where the records came from.
    """

    label: str
    sigma: float | None
    records: list[CohenRecord]
    train_sigma: tuple[float, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    source: str = ""
    noise: str = "gaussian"  # the header's ``noise`` (files without one: Cohen's Gaussian)
    norm: str = "l2"  # the header's ``norm``: what the radii measure
    certified: bool = True  # False for a heuristic (header units "... not a certificate")
    metadata: dict[str, str] = field(default_factory=dict)  # the file's ``#`` header

    @property
    def smoothing(self) -> str:
        """``"gaussian l2"``, ``"laplace l1"``: the noise and the norm of the radii."""
        return f"{self.noise} {self.norm}"

    @property
    def acr(self) -> float:
        return average_certified_radius(self.records)

    def accuracy(self, radius: float) -> float:
        return certified_accuracy(self.records, radius)


def _deepest(pattern: re.Pattern[str], path: Path) -> float | None:
    """The number ``pattern`` finds in the deepest part of ``path`` that matches, if any."""
    for part in reversed(path.parts):
        if match := pattern.search(part):
            return float(match.group(1))
    return None


def _levels(text: str | None) -> tuple[float, ...]:
    """Noise levels from a header value: ``0.25``, ``[0.25, 0.5]``; none from ``None`` or ``''``."""
    return tuple(float(v) for v in re.findall(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text or ""))


def load_result(
    path: str | Path,
    sigma: float | None = None,
    label: str | None = None,
    settings: Mapping[str, str] | None = None,
) -> Result:
    """Reads one TSV. The certification sigma is the header's, else the path's ``sigma_X``, else
    its ``noise_X`` (the reference certifies at the training sigma unless told otherwise), else
    ``sigma``. The training sigma is the header's ``train_sigma``, else the path's ``noise_X``."""
    path = Path(path)
    metadata, records = read_records(path)
    path_cert, path_train = (
        _deepest(_CERT_SIGMA_IN_PATH, path),
        _deepest(_TRAIN_SIGMA_IN_PATH, path),
    )
    if "sigma" in metadata:
        sigma = float(metadata["sigma"])
    elif path_cert is not None:
        sigma = path_cert
    elif path_train is not None:
        sigma = path_train
    train_sigma = _levels(metadata.get("train_sigma"))
    if not train_sigma and path_train is not None:
        train_sigma = (path_train,)
    noise, norm = metadata.get("noise") or "gaussian", metadata.get("norm") or "l2"
    return Result(
        label or str(path),
        sigma,
        records,
        train_sigma,
        dict(settings or {}),
        str(path),
        noise,
        norm,
        "not a certificate" not in str(metadata.get("units", "")),
        dict(metadata),
    )


def accuracy_name(results: Sequence[Result]) -> str:
    """``certified_accuracy``, or ``estimated_accuracy`` when a run is a heuristic (BaseSPT):
    the envelope's column, the plot's file name and title never call a heuristic certified."""
    return "certified_accuracy" if all(r.certified for r in results) else "estimated_accuracy"


# What makes two runs' numbers comparable: the same data, sample sizes and confidence.
PROTOCOL = ("dataset", "n0", "n", "alpha", "examples")


def _known(value: str | None) -> str | None:
    return None if value in (None, "", "None", "null") else value


def protocol(result: Result) -> dict[str, object]:
    """The run's dataset, n0, n, alpha (from its header; None where the file does not say, as in
    the reference implementation's files) and its number of examples."""
    meta = {key: _known(result.metadata.get(key)) for key in ("dataset", "n0", "n", "alpha")}
    return {
        "dataset": meta["dataset"],
        "n0": int(meta["n0"]) if meta["n0"] is not None else None,
        "n": int(meta["n"]) if meta["n"] is not None else None,
        "alpha": float(meta["alpha"]) if meta["alpha"] is not None else None,
        "examples": len(result.records),
    }


def mixed_protocol(results: Sequence[Result]) -> dict[str, list[object]]:
    """The protocol settings on which the runs differ, each with its known values in order of
    appearance (a setting a file does not state is not counted as different)."""
    protocols = [protocol(result) for result in results]
    mixed = {}
    for key in PROTOCOL:
        values = list(dict.fromkeys(p[key] for p in protocols if p[key] is not None))
        if len(values) > 1:
            mixed[key] = values
    return mixed


def mixed_warning(results: Sequence[Result]) -> str | None:
    """One line saying which protocol settings the runs differ in, or None."""
    mixed = mixed_protocol(results)
    if not mixed:
        return None
    parts = "; ".join(f"{k} {', '.join(_text(v) for v in vs)}" for k, vs in mixed.items())
    return (
        f"mixed protocols: the runs differ in {parts}; their numbers are not comparable, and "
        "the envelope names the best run's value of each"
    )


def _text(value: object) -> str:
    """A setting as a person writes it: ``0.25``, ``1000``, ``0.001``."""
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def _run_settings(result: Result) -> dict[str, object]:
    return {
        "sigma": result.sigma,
        "train_sigma": _sigmas_text(result.train_sigma),
        "noise": result.noise,
        "norm": result.norm,
        **protocol(result),
    }


def path_labels(paths: Sequence[str | Path]) -> list[str]:
    """The parts of each path that differ from the others' (common leading and trailing folders
    and file names dropped): ``noise_0.25/sigma_0.50`` for ``ref/noise_0.25/test/sigma_0.50``
    beside ``ref/noise_0.50/test/sigma_0.50``. A path with nothing of its own keeps its name."""
    parts = [Path(p).parts for p in paths]
    if len(parts) < 2:
        return [str(p) for p in paths]
    shortest = min(len(p) for p in parts)
    head = 0
    while head < shortest and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({p[len(p) - 1 - tail] for p in parts}) == 1:
        tail += 1
    return [
        "/".join(p[head : len(p) - tail]) or Path(path).name
        for p, path in zip(parts, paths, strict=True)
    ]


def short_labels(results: Sequence[Result]) -> list[str]:
    """Labels for runs read from files: the settings that differ between them (``sigma=0.5``,
    ``sigma=0.25, examples=200``) when those tell every run apart; else the parts of their paths
    that differ, followed by those settings. A lone run keeps its path."""
    if len(results) < 2:
        return [result.source or result.label for result in results]
    values = [_run_settings(result) for result in results]
    differ = [key for key in values[0] if len({str(v[key]) for v in values}) > 1]
    if all(result.train_sigma in ((), (result.sigma,)) for result in results):
        differ = [key for key in differ if key != "train_sigma"]  # it says what sigma says
    settings = [", ".join(f"{key}={_text(v[key])}" for key in differ) for v in values]
    if all(settings) and len(set(settings)) == len(settings):
        return settings
    paths = path_labels([result.source or result.label for result in results])
    return [f"{p} ({s})" if s else p for p, s in zip(paths, settings, strict=True)]


def shared_protocol_text(results: Sequence[Result]) -> str:
    """What every run shares: ``digits, n=10000, alpha=0.001, 200 examples`` (settings that
    differ, or that no file states, are left out: the labels say those)."""
    protocols = [protocol(result) for result in results]
    if not protocols:
        return ""
    shared = {
        key: protocols[0][key]
        for key in PROTOCOL
        if protocols[0][key] is not None and all(p[key] == protocols[0][key] for p in protocols)
    }
    words = [str(shared["dataset"])] if "dataset" in shared else []
    words += [f"{key}={_text(shared[key])}" for key in ("n0", "n", "alpha") if key in shared]
    if "examples" in shared:
        words.append(f"{shared['examples']} examples")
    return ", ".join(words)


def plain_gaussian(results: Sequence[Result]) -> bool:
    """Whether every run is Gaussian noise with l2 radii (Cohen's setting)."""
    return all(result.smoothing == "gaussian l2" for result in results)


def radius_label(results: Sequence[Result]) -> str:
    """The x-axis label: ``"l1 radius"``, or every norm when the runs mix them."""
    return f"{'/'.join(dict.fromkeys(result.norm for result in results))} radius"


def _sigmas_text(levels: Sequence[float]) -> str | None:
    """``'0.25'``, or ``'0.25,0.5'`` for a model trained at several levels; None when unknown."""
    return ",".join(str(float(v)) for v in levels) if levels else None


def curve_names(results: Sequence[Result]) -> list[str]:
    """One distinct legend entry per run: its label if it has swept settings, else its sigma
    (with the training sigma when that differs), else its label; a repeated name gets the run's
    label appended."""
    names = []
    mixed = len({res.smoothing for res in results}) > 1
    for res in results:
        if res.settings or res.sigma is None or res.label != (res.source or res.label):
            name = res.label
        else:
            name = f"sigma={res.sigma}"
            if res.train_sigma and res.train_sigma != (res.sigma,):
                name += f" (trained at {_sigmas_text(res.train_sigma)})"
        if mixed:  # runs of several noises or norms: say which is which
            name = f"{res.noise}, {res.norm}: {name}"
        names.append(name)
    return [
        f"{name} ({res.label})" if names.count(name) > 1 and name != res.label else name
        for name, res in zip(names, results, strict=True)
    ]


def envelope(results: Sequence[Result], radii: Sequence[float]) -> list[dict[str, object]]:
    """Cohen et al.'s Table 1 over any swept setting: per radius, the run with the best certified
    accuracy (its label, certification and training sigma), that accuracy and the same run's
    clean (radius 0) smoothed accuracy. Ties go to the first run. When the runs differ in a
    protocol setting (``mixed_protocol``), a ``best_<setting>`` column per such setting says the
    best run's value, so a mix is visible in the table itself."""
    mixed = mixed_protocol(results)
    rows = []
    for radius in radii:
        accuracies = [r.accuracy(radius) for r in results]
        best = results[int(np.argmax(accuracies))]
        rows.append(
            {
                "radius": float(radius),
                "best_sigma": best.sigma if best.sigma is not None else float("nan"),
                "best_train_sigma": _sigmas_text(best.train_sigma),
                "best_run": best.label,
                **{f"best_{key}": protocol(best)[key] for key in mixed},
                accuracy_name(results): max(accuracies),
                "clean_accuracy": best.accuracy(0.0),
            }
        )
    return rows


def per_run_table(results: Sequence[Result], radii: Sequence[float]) -> list[dict[str, object]]:
    """One row per run: its label, one column per swept setting other than sigma, certification
    and training sigma, example count, dataset, n0, n and alpha (None where the file does not
    say), accuracy at each radius, ACR and the source file; the noise and the norm of the radii
    too unless every run is Gaussian with l2 radii."""
    swept = list(dict.fromkeys(k for r in results for k in r.settings if k != "sigma"))
    rows: list[dict[str, object]] = []
    for result in results:
        row: dict[str, object] = {"run": result.label}
        row.update({key: result.settings.get(key) for key in swept})
        if not plain_gaussian(results):
            row.update(noise=result.noise, norm=result.norm)
        row["sigma"] = result.sigma
        row["train_sigma"] = _sigmas_text(result.train_sigma)
        row.update(examples=len(result.records))
        row.update({key: value for key, value in protocol(result).items() if key != "examples"})
        row.update({f"acc@{r:.2f}": result.accuracy(r) for r in radii})
        row["acr"] = result.acr
        row["file"] = result.source
        rows.append(row)
    if all(result.source in ("", result.label) for result in results):
        for row in rows:  # lone files: the label is the path already
            del row["file"]
    return rows


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if not np.isfinite(value):
            return "-"
        return f"{value:.4f}" if value == 0 or abs(value) >= 0.001 else f"{value:.3g}"
    return "-" if value is None else str(value)


def markdown(rows: Sequence[dict[str, object]]) -> str:
    """A Markdown table of ``rows`` (all with the same keys)."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    keys = list(rows[0])
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(keys) + "\n")
        for row in rows:
            handle.write(
                "\t".join(
                    repr(v) if isinstance(v, float) else str(v) for v in (row[k] for k in keys)
                )
                + "\n"
            )


def curves_title(results: Sequence[Result]) -> str:
    """``certified accuracy`` (``estimated accuracy (heuristic)`` when a run is a heuristic) with
    what every run shares: ``digits, n=10000, alpha=0.001, 200 examples``; a lone run's ACR too
    (several runs give theirs in the legend)."""
    name = accuracy_name(results)
    title = name.replace("_", " ") + ("" if name == "certified_accuracy" else " (heuristic)")
    shared = shared_protocol_text(results)
    if len(results) == 1:
        shared += f"{', ' if shared else ''}ACR={results[0].acr:.3f}"
    return f"{title}\n{shared}" if shared else title


def write_report(
    results: Sequence[Result],
    out_dir: Path,
    radii: Sequence[float],
    colours: Sequence[str] | None = None,
) -> dict:
    """Writes runs.tsv/.md, envelope.tsv/.md and certified_accuracy.png (estimated_accuracy.png
    when a run is a heuristic) into ``out_dir``; the curves in ``colours`` (one per run) if given.
    A mix of protocols is stated on the first line of ``envelope.md`` (and in its
    ``best_<setting>`` columns)."""
    from smoothcert.report.plots import plot_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    runs, env = per_run_table(results, radii), envelope(results, radii)
    write_tsv(out_dir / "runs.tsv", runs)
    write_tsv(out_dir / "envelope.tsv", env)
    (out_dir / "runs.md").write_text(markdown(runs), encoding="utf-8")
    warning = mixed_warning(results)
    note = f"**Warning: {warning}.**\n\n" if warning else ""
    (out_dir / "envelope.md").write_text(note + markdown(env), encoding="utf-8")
    top = max((r.radius for res in results for r in res.records), default=0.0)
    grid = np.arange(0.0, top + 0.02, 0.01)
    several = len(results) > 1
    curves = {
        (f"{name}, ACR={res.acr:.3f}" if several else name): (
            grid,
            certified_accuracy_curve(res.records, grid),
        )
        for name, res in zip(curve_names(results), results, strict=True)
    }
    plot_curves(
        out_dir / f"{accuracy_name(results)}.png",
        curves,
        curves_title(results),
        radius_label(results),
        colours=colours,
    )
    return {"runs": runs, "envelope": env}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smoothcert.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", help="certification TSV files")
    parser.add_argument("--radii", type=float, nargs="+", default=list(DEFAULT_RADII))
    parser.add_argument("--sigma", type=float, default=None, help="sigma for files without one")
    parser.add_argument("--out", type=Path, default=None, help="also write TSV/Markdown/PNG here")
    parser.add_argument(
        "--labels",
        default=None,
        help="comma-separated run labels, one per path (default: the settings that differ, "
        "else the parts of the paths that differ)",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="report runs certified under different protocols (dataset, n0, n, alpha, number "
        "of examples) together; the envelope then names each best run's values",
    )
    args = parser.parse_args(argv)
    try:
        results = [load_result(p, args.sigma) for p in args.paths]
    except (OSError, ValueError) as error:
        print(f"smoothcert.report: error: {error}", file=sys.stderr)
        return 2
    if args.labels is not None:
        labels = [label.strip() for label in args.labels.split(",")]
        if len(labels) != len(results) or len(set(labels)) != len(labels):
            print(
                f"smoothcert.report: error: --labels gives {len(labels)} labels for "
                f"{len(results)} paths: give one distinct label per path, comma-separated",
                file=sys.stderr,
            )
            return 2
    else:
        labels = short_labels(results)
    for result, label in zip(results, labels, strict=True):
        result.label = label
    warning = mixed_warning(results)
    if warning and not args.allow_mixed:
        print(
            f"smoothcert.report: error: {warning.split(';')[0]}: an envelope over them compares "
            "unlike numbers; report them separately, or pass --allow-mixed",
            file=sys.stderr,
        )
        return 2
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(markdown(per_run_table(results, args.radii)))
    print(markdown(envelope(results, args.radii)))
    if args.out is not None:
        write_report(results, args.out, args.radii)
        name = accuracy_name(results)
        print(f"wrote {args.out}/runs.tsv, envelope.tsv (and .md), {name}.png")
    return 0
