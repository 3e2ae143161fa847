"""Curves, ACR and Cohen et al.'s envelope table from certification TSV files.

    python -m smoothcert.report outputs/.../certify.tsv other/noise_0.50/certify.tsv --out DIR

Reads ours and the reference implementation's files (``idx label predict radius correct time``;
time as seconds or ``H:MM:SS.ffffff``). Each file's sigma comes from its ``# sigma:`` header, else
from a ``sigma_0.25`` / ``noise_0.25`` part of its path, else ``--sigma``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smoothcert.curves import (
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
)
from smoothcert.records import CohenRecord, read_records

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
_SIGMA_IN_PATH = re.compile(r"(?:sigma|noise)[_=-]?(\d+(?:\.\d+)?)")


@dataclass
class Result:
    """One certification run: where it came from, its sigma and its records."""

    label: str
    sigma: float | None
    records: list[CohenRecord]

    @property
    def acr(self) -> float:
        return average_certified_radius(self.records)

    def accuracy(self, radius: float) -> float:
        return certified_accuracy(self.records, radius)


def load_result(path: str | Path, sigma: float | None = None, label: str | None = None) -> Result:
    """Reads one TSV; sigma from the header, the path, or the given fallback (in that order)."""
    path = Path(path)
    metadata, records = read_records(path)
    if "sigma" in metadata:
        sigma = float(metadata["sigma"])
    elif match := _SIGMA_IN_PATH.search(str(path)):
        sigma = float(match.group(1))
    return Result(label or str(path), sigma, records)


def envelope(results: Sequence[Result], radii: Sequence[float]) -> list[dict[str, float | str]]:
    """Cohen et al.'s Table 1: per radius, the run with the best certified accuracy, that
    accuracy and the same run's clean (radius 0) smoothed accuracy. Ties go to the first run."""
    rows = []
    for radius in radii:
        accuracies = [r.accuracy(radius) for r in results]
        best = results[int(np.argmax(accuracies))]
        rows.append(
            {
                "radius": float(radius),
                "best_sigma": best.sigma if best.sigma is not None else float("nan"),
                "best_run": best.label,
                "certified_accuracy": max(accuracies),
                "clean_accuracy": best.accuracy(0.0),
            }
        )
    return rows


def per_run_table(results: Sequence[Result], radii: Sequence[float]) -> list[dict[str, object]]:
    """One row per run: sigma, example count, accuracy at each radius, ACR."""
    rows: list[dict[str, object]] = []
    for result in results:
        row: dict[str, object] = {"run": result.label, "sigma": result.sigma}
        row["examples"] = len(result.records)
        row.update({f"acc@{r:.2f}": result.accuracy(r) for r in radii})
        row["acr"] = result.acr
        rows.append(row)
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
    """Writes runs.tsv/.md, envelope.tsv/.md and certified_accuracy.png into ``out_dir``."""
    from smoothcert.plots import plot_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    runs, env = per_run_table(results, radii), envelope(results, radii)
    write_tsv(out_dir / "runs.tsv", runs)
    write_tsv(out_dir / "envelope.tsv", env)
    (out_dir / "runs.md").write_text(markdown(runs), encoding="utf-8")
    (out_dir / "envelope.md").write_text(markdown(env), encoding="utf-8")
    top = max(max(r.radius for r in res.records) for res in results)
    grid = np.arange(0.0, top + 0.02, 0.01)
    curves = {
        (f"sigma={res.sigma}" if res.sigma is not None else res.label): (
            grid,
            certified_accuracy_curve(res.records, grid),
        )
        for res in results
    }
    plot_curves(out_dir / "certified_accuracy.png", curves, "certified accuracy")
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
        print(f"wrote {args.out}/runs.tsv, envelope.tsv (and .md), certified_accuracy.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
