"""Sequential certification side by side: fixed-n CERTIFY, the sequential mode, and Voráček 2024
single-radius thresholds (reimplemented from the paper), on one trained classifier.

For every example (every ``--skip``-th of the test split, the first ``--num-examples``):

- ``fixed``: Cohen et al.'s CERTIFY, n0 selection and n estimation samples, Clopper-Pearson
  (``Smooth.certify_many_with_predictions``, the path of ``certify=cohen``); its estimation counts
  also give the p_A estimate of the plot (the fraction of the n draws on the true label).
- ``sequential``: ``certify.sequential=true``'s certifier (anytime-valid confidence sequence over
  the grid ``--radii``, capped at n0 + n draws), when the installed smoothcert has it.
- ``voracek``: Voráček 2024 single-radius thresholds, reimplemented from the paper
  (``smoothcert.stats.single_radius``; true label, no selection step, level log(2/alpha) per
  side), one test per grid radius at p* = Phi(r / sigma), capped at n0 + n draws. The radii are
  decided on one shared stream (draws in doubling batches until every radius is decided or the
  cap): each radius's decision and draw count are exactly those of its own run from the same
  seed; ``passes`` is the shared stream's draws (what was timed), ``passes_sum`` the sum of the
  per-radius counts (the cost of one run per radius, as the reference runs it). Each radius is
  at level alpha on its own, not simultaneously.

Every method draws example ``i``'s noise from ``example_generator(seed, i)`` (the dataset rule),
so all of them see prefixes of the same noise stream. Rows go to ``--out/<label>.<method>.tsv``
(one per example, streamed); ``--report`` rebuilds the table and the plot from those files
without sampling.

    python benchmarks/sequential_certify.py --checkpoint CKPT --label digits --num-examples 60
    python benchmarks/sequential_certify.py --report --labels digits,resnet20 --plot docs/X.png
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from smoothcert.certifiers.classification import Smooth
from smoothcert.noise import example_generator
from smoothcert.perturbation import ADDITIVE
from smoothcert.sampling import OutputsKept, example_stream, sample
from smoothcert.stats.single_radius import ROBUST, SingleRadiusThresholds, target_probability

METHODS = ("fixed", "sequential", "voracek")
NAMES = {
    "fixed": "fixed-n CERTIFY",
    "sequential": "sequential (certify.sequential=true)",
    "voracek": "Voráček 2024 single-radius thresholds (reimplemented from the paper)",
}


def load(checkpoint: str, device: torch.device):
    """The classifier and test split of a smoothcert classification checkpoint, and its sigma."""
    from lightning_modules.classification import ClassificationModule
    from lightning_modules.data.classification import ClassificationDataModule

    module = ClassificationModule.load_from_checkpoint(checkpoint, map_location=device)
    meta = torch.load(checkpoint, map_location="cpu", weights_only=False)
    data = ClassificationDataModule(**meta["datamodule_hyper_parameters"])
    model = module.model.to(device).eval()
    return model, data.dataset("test"), float(meta["smoothcert"]["train_sigma"]), data.num_classes


def grid_columns(radii, prefix: str) -> list[str]:
    return [f"{prefix}@{r:.2f}" for r in radii]


class Rows:
    """One TSV per method, streamed, with a header line of the settings."""

    def __init__(self, out: Path, label: str, method: str, radii, settings: str) -> None:
        self.path = out / f"{label}.{method}.tsv"
        self.file = self.path.open("w", newline="")
        self.file.write(f"# {NAMES[method]}; {settings}\n")
        self.columns = ["idx", "label", "predict", "radius", "passes", "passes_sum", "time", "cpu"]
        self.columns += (
            ["p_label", "stop"] + grid_columns(radii, "cert") + grid_columns(radii, "draws")
        )
        self.writer = csv.DictWriter(self.file, self.columns, delimiter="\t", restval="")
        self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()


class Clock:
    """Wall and process CPU seconds of a block (the CPU time is the fairer ratio on a shared
    machine, where the wall time also counts waiting for a core)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def into(self, row: dict) -> dict:
        row.update(time=self.wall, cpu=self.cpu)
        return row


def run_fixed(smooth, x, label, idx, args, radii) -> dict:
    generator = example_generator(args.seed, idx, x.device)
    with Clock() as clock:
        results, _, counts = smooth.certify_many_with_predictions(
            [x], args.n0, args.n, args.alpha, args.batch_size, [generator]
        )
    prediction, radius = results[0]
    correct = prediction == label
    row = {"idx": idx, "label": label, "predict": prediction, "radius": radius}
    row.update(passes=args.n0 + args.n, p_label=int(counts[0, label]) / args.n)
    clock.into(row)
    for r, col in zip(radii, grid_columns(radii, "cert"), strict=True):
        row[col] = int(correct and radius >= r)
    return row


def run_voracek(model, noise, thresholds, x, label, idx, args, radii) -> dict:
    cap = args.n0 + args.n
    generator = example_generator(args.seed, idx, x.device)
    stream = example_stream(noise, ADDITIVE, x, generator)
    right = OutputsKept(map=lambda logits: logits.argmax(dim=1) == label)
    decisions: dict[float, tuple[int, int]] = {}
    kept: list[np.ndarray] = []
    drawn, size = 0, args.first_batch
    clock = Clock().__enter__()
    while len(decisions) < len(radii) and drawn < cap:
        m = min(size, cap - drawn)
        got = sample(model, [x], [m], [stream], right, batch_size=args.batch_size).result()[0]
        kept.append(got.cpu().numpy())
        drawn += m
        size = min(2 * size, args.batch_size)
        path = np.concatenate(kept)
        for r in radii:
            if r not in decisions:
                decision, used = thresholds[r].decide(path)
                if decision != -1 or drawn == cap:
                    decisions[r] = (int(decision), int(used))
    clock.__exit__()
    certified = [r for r in radii if decisions[r][0] == ROBUST]
    row = {"idx": idx, "label": label, "predict": label if certified else -1}
    row.update(radius=max(certified) if certified else 0.0, passes=drawn)
    clock.into(row)
    row["passes_sum"] = sum(used for _, used in decisions.values())
    for r, c, d in zip(
        radii, grid_columns(radii, "cert"), grid_columns(radii, "draws"), strict=True
    ):
        row[c], row[d] = int(decisions[r][0] == ROBUST), decisions[r][1]
    return row


def stopping(args) -> dict:
    """The sequential mode's opt-in stopping settings given (default: none, today's rule)."""
    options = {"stop_alpha": args.stop_alpha, "futility": args.futility}
    return {k: v for k, v in options.items() if v is not None}


def run_sequential(smooth, x, label, idx, args, radii) -> dict:
    from smoothcert.certifiers.sequential import certify_sequential_many

    generator = example_generator(args.seed, idx, x.device)
    with Clock() as clock:
        outcome = certify_sequential_many(
            smooth,
            [x],
            args.n0,
            args.n,
            args.alpha,
            args.batch_size,
            [generator],
            radii,
            **stopping(args),
        )[0]
    correct = outcome.predict == label
    row = {"idx": idx, "label": label, "predict": outcome.predict, "radius": outcome.radius}
    row.update(passes=args.n0 + outcome.samples, stop=outcome.stop)
    clock.into(row)
    for r, col in zip(radii, grid_columns(radii, "cert"), strict=True):
        row[col] = int(correct and outcome.radius >= r)
    return row


def certify(args) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, dataset, sigma, num_classes = load(args.checkpoint, device)
    sigma = args.sigma or sigma
    radii = [float(r) for r in args.radii.split(",")]
    smooth = Smooth(model, num_classes, sigma)
    cap = args.n0 + args.n
    thresholds = {
        r: SingleRadiusThresholds.build(target_probability(r, sigma), args.alpha, cap)
        for r in radii
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = (
        f"checkpoint={args.checkpoint} sigma={sigma} n0={args.n0} n={args.n} alpha={args.alpha} "
        f"seed={args.seed} start={args.start} skip={args.skip} batch_size={args.batch_size} "
        f"threads={args.threads}" + "".join(f" {k}={v}" for k, v in stopping(args).items())
    )
    methods = args.methods.split(",")
    files = {m: Rows(out, args.label, m, radii, settings) for m in methods}
    indices = list(range(args.start, len(dataset), args.skip))[: args.num_examples]
    for count, idx in enumerate(indices, 1):
        x, label = dataset[idx]
        x, label = torch.as_tensor(x).to(device), int(label)
        line = [f"[{count}/{len(indices)}] idx {idx}"]
        for method in methods:
            if method == "fixed":
                row = run_fixed(smooth, x, label, idx, args, radii)
            elif method == "voracek":
                row = run_voracek(model, smooth.noise, thresholds, x, label, idx, args, radii)
            else:
                row = run_sequential(smooth, x, label, idx, args, radii)
            files[method].write(row)
            line.append(f"{method} {row['passes']} passes {row['time']:.2f}s r={row['radius']:.3f}")
        print("; ".join(line), flush=True)


# ----- report: table and plot from the TSVs ------------------------------------------------------


def read_rows(path: Path) -> list[dict]:
    with path.open() as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def setting(path: Path, key: str) -> str:
    """A setting from a TSV's header line (``key=value``)."""
    header = path.open().readline()
    return next(word.split("=", 1)[1] for word in header.split() if word.startswith(key + "="))


def summarize(out: Path, label: str) -> tuple[list[str], dict[str, list[dict]]]:
    found = {
        m: read_rows(out / f"{label}.{m}.tsv")
        for m in METHODS
        if (out / f"{label}.{m}.tsv").exists()
    }
    common = set.intersection(*({r["idx"] for r in rows} for rows in found.values()))
    found = {m: [r for r in rows if r["idx"] in common] for m, rows in found.items()}
    if not common:
        raise SystemExit(f"{label}: no example has rows of every method yet in {out}")
    grids = [[c.split("@")[1] for c in rows[0] if c.startswith("cert@")] for rows in found.values()]
    radii = [r for r in grids[0] if all(r in grid for grid in grids)]  # the radii all share
    return radii, found


def table(out: Path, labels: list[str]) -> str:
    lines = []
    for label in labels:
        radii, found = summarize(out, label)
        fixed_time = sum(float(r["time"]) for r in found["fixed"])
        fixed_cpu = sum(float(r["cpu"]) for r in found["fixed"])
        fixed_passes = sum(float(r["passes"]) for r in found["fixed"])
        examples = len(found["fixed"])
        lines.append(f"\n**{label}** ({examples} examples)\n")
        head = ["method", *[f"acc@{r}" for r in radii], "mean passes", "median passes"]
        head += ["passes / fixed", "wall time / fixed", "CPU time / fixed"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        notes = []
        for method, rows in found.items():
            acc = [np.mean([int(r[f"cert@{g}"]) for r in rows]) for g in radii]
            passes = np.array([float(r["passes"]) for r in rows])
            wall = sum(float(r["time"]) for r in rows) / fixed_time
            cpu = sum(float(r["cpu"]) for r in rows) / fixed_cpu
            cells = [NAMES[method], *[f"{a:.3f}" for a in acc]]
            cells += [f"{passes.mean():,.0f}", f"{np.median(passes):,.0f}"]
            cells += [
                f"1/{fixed_passes / passes.sum():.1f}",
                f"1/{1 / wall:.1f}",
                f"1/{1 / cpu:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            if method == "sequential":
                fixed = [np.mean([int(r[f"cert@{g}"]) for r in found["fixed"]]) for g in radii]
                gaps = 100 * np.abs(np.array(acc) - np.array(fixed))
                worst = radii[int(np.argmax(gaps))]
                ratio = fixed_passes / passes.sum()
                verdict = "met" if gaps.max() <= 1.0 and ratio >= 10 else "NOT met"
                notes.append(
                    f"- acceptance (sequential): largest gap to fixed-n {gaps.max():.1f} points "
                    f"(at r={worst}), {ratio:.1f}x fewer forward passes: {verdict}"
                )
                stops = Counter(r.get("stop", "") for r in rows)
                notes.append(f"- sequential stop reasons: {dict(stops)}")
            if method == "voracek":
                total = np.array([float(r["passes_sum"]) for r in rows])
                notes.append(
                    f"- Voráček, one run per radius: mean {total.mean():,.0f}, median "
                    f"{np.median(total):,.0f} draws, 1/{fixed_passes / total.sum():.1f} of fixed-n"
                )
        lines += ["", *notes]
    return "\n".join(lines)


def plot(out: Path, labels: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(labels), figsize=(5.5 * len(labels), 4.2), squeeze=False)
    markers = {
        "fixed": ("s", "tab:gray"),
        "sequential": ("o", "tab:blue"),
        "voracek": ("^", "tab:orange"),
    }
    for ax, label in zip(axes[0], labels, strict=True):
        radii, found = summarize(out, label)
        n = float(setting(out / f"{label}.fixed.tsv", "n"))
        sigma = float(setting(out / f"{label}.fixed.tsv", "sigma"))
        cap = n + float(setting(out / f"{label}.fixed.tsv", "n0"))
        # p_hat in [1 / (2n), 1 - 1 / (2n)]: the logit axis has no 0 or 1
        p = {r["idx"]: min(max(float(r["p_label"]), 0.5 / n), 1 - 0.5 / n) for r in found["fixed"]}
        for g in radii:
            p_star = target_probability(float(g), sigma)
            ax.axvline(p_star, color="k", lw=0.6, ls=":")
            ax.text(p_star, 0.98, f" p* at r={g}", transform=ax.get_xaxis_transform(), fontsize=7,
                    rotation=90, va="top", ha="right")  # fmt: skip
        for method, rows in found.items():
            marker, color = markers[method]
            xs = [p[r["idx"]] for r in rows]
            ys = [float(r["passes"]) for r in rows]
            ax.scatter(
                xs,
                ys,
                marker=marker,
                color=color,
                s=22,
                alpha=0.7,
                label=NAMES[method].split(" (")[0],
            )
        ax.set_yscale("log")
        ax.set_ylim(300, 1.5 * cap)
        ax.set_xscale("logit")
        ax.set_xlabel("p_A estimate (true label's share of fixed-n's n draws)")
        ax.set_ylabel("forward passes for the example")
        ax.set_title(f"{label} ({len(found['fixed'])} examples; n0 + n = {cap:,.0f})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a smoothcert classification checkpoint (.ckpt)")
    parser.add_argument("--label", default="digits", help="names the output files")
    parser.add_argument("--methods", default="fixed,sequential,voracek", help=f"some of {METHODS}")
    parser.add_argument("--num-examples", type=int, default=60)
    parser.add_argument("--skip", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="first index (shards: 0, 1, ...)")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--sigma", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--radii", default="0.0,0.25,0.5,0.75,1.0")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--first-batch", type=int, default=64, help="sequential draws: first batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-alpha", type=float, default=None, help="sequential: stop_alpha")
    parser.add_argument("--futility", default=None, help="sequential: cap | projected")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/sequential_certify")
    parser.add_argument("--report", action="store_true", help="table and plot from --out's TSVs")
    parser.add_argument("--labels", default="digits", help="report: the labels, comma-separated")
    parser.add_argument("--plot", default=None, help="report: where to save the plot")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.report:
        labels = args.labels.split(",")
        print(table(Path(args.out), labels))
        if args.plot:
            plot(Path(args.out), labels, args.plot)
            print(f"plot: {args.plot}")
        return
    if not args.checkpoint:
        raise SystemExit("give --checkpoint CKPT (or --report)")
    certify(args)


if __name__ == "__main__":
    main()
