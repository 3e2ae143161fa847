"""Curves, ACR and Cohen et al.'s envelope table from certification TSV files.

    python -m smoothcert.report outputs/.../certify.tsv ref/noise_0.25/test/sigma_0.50 --out DIR

Reads ours and the reference implementation's files (``idx label predict radius correct time``;
time as seconds or ``H:MM:SS.ffffff``). A file's certification sigma comes from its ``# sigma:``
header, else from a ``sigma_0.50`` part of its path, else from a ``noise_0.25`` part, else
``--sigma``. Its training sigma comes from its ``# train_sigma:`` header, else from a ``noise_0.25``
part of its path: the reference repository's layout is
``noise_<training sigma>/test/sigma_<certification sigma>``.
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
    )


def accuracy_name(results: Sequence[Result]) -> str:
    """``certified_accuracy``, or ``estimated_accuracy`` when a run is a heuristic (BaseSPT):
    the envelope's column, the plot's file name and title never call a heuristic certified."""
    return "certified_accuracy" if all(r.certified for r in results) else "estimated_accuracy"


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
        if res.settings or res.sigma is None:
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
    clean (radius 0) smoothed accuracy. Ties go to the first run."""
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
                accuracy_name(results): max(accuracies),
                "clean_accuracy": best.accuracy(0.0),
            }
        )
    return rows


def per_run_table(results: Sequence[Result], radii: Sequence[float]) -> list[dict[str, object]]:
    """One row per run: its label, one column per swept setting other than sigma, certification
    and training sigma, example count, accuracy at each radius, ACR and the source file; the
    noise and the norm of the radii too unless every run is Gaussian with l2 radii."""
    swept = list(dict.fromkeys(k for r in results for k in r.settings if k != "sigma"))
    rows: list[dict[str, object]] = []
    for result in results:
        row: dict[str, object] = {"run": result.label}
        row.update({key: result.settings.get(key) for key in swept})
        if not plain_gaussian(results):
            row.update(noise=result.noise, norm=result.norm)
        row["sigma"] = result.sigma
        row["train_sigma"] = _sigmas_text(result.train_sigma)
        row["examples"] = len(result.records)
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
        return f"{value:.4f}" if np.isfinite(value) else "-"
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


def write_report(results: Sequence[Result], out_dir: Path, radii: Sequence[float]) -> dict:
    """Writes runs.tsv/.md, envelope.tsv/.md and certified_accuracy.png (estimated_accuracy.png
    when a run is a heuristic) into ``out_dir``."""
    from smoothcert.report.plots import plot_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    runs, env = per_run_table(results, radii), envelope(results, radii)
    write_tsv(out_dir / "runs.tsv", runs)
    write_tsv(out_dir / "envelope.tsv", env)
    (out_dir / "runs.md").write_text(markdown(runs), encoding="utf-8")
    (out_dir / "envelope.md").write_text(markdown(env), encoding="utf-8")
    top = max((r.radius for res in results for r in res.records), default=0.0)
    grid = np.arange(0.0, top + 0.02, 0.01)
    curves = {
        name: (grid, certified_accuracy_curve(res.records, grid))
        for name, res in zip(curve_names(results), results, strict=True)
    }
    name = accuracy_name(results)
    title = name.replace("_", " ") + ("" if name == "certified_accuracy" else " (heuristic)")
    plot_curves(out_dir / f"{name}.png", curves, title, radius_label(results))
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
    args = parser.parse_args(argv)
    try:
        results = [load_result(p, args.sigma) for p in args.paths]
    except (OSError, ValueError) as error:
        print(f"smoothcert.report: error: {error}", file=sys.stderr)
        return 2
    print(markdown(per_run_table(results, args.radii)))
    print(markdown(envelope(results, args.radii)))
    if args.out is not None:
        write_report(results, args.out, args.radii)
        name = accuracy_name(results)
        print(f"wrote {args.out}/runs.tsv, envelope.tsv (and .md), {name}.png")
    return 0
