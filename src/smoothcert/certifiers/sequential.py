"""Sequential CERTIFY (issue 23): Cohen et al.'s certificate from an anytime-valid confidence
sequence, sampling only until every radius of a grid is decided.

Per example: ``n0`` samples select the class c_hat (as CERTIFY does); then the estimation samples
(the same stream, right after the ``n0``) are drawn in rounds up to the check times of
:func:`check_times` (a fixed geometric schedule: it depends on neither the batch size nor the
number of processes, so records do not either). After each round the beta-binomial confidence
sequence of ``smoothcert.stats.sequential`` bounds p_A = P(f(x + eps) = c_hat) (its running
intersection: the largest lower and smallest upper end so far, valid since the sequence covers
p_A at every time at once), and each grid radius r is

- certified: the certificate at the lower bound reaches r (``noise.radius(lower) >= r``, and the
  lower bound exceeds 1/2);
- ruled out: not even the upper bound would certify r (so the true p_A cannot; for r = 0 this is
  the abstention, upper bound <= 1/2);
- unreachable: even if every sample up to the example's cap were c_hat, the lower bound at the cap
  could not certify r (a futility stop: it only loses power).

Opt-in stopping settings (defaults: today's rule). They change only WHEN sampling stops, never
the reported bound, which is the running maximum of the lower end at level ``alpha``: valid at
any stopping time, and pathwise never larger at an earlier stop, so stopping sooner only loses
power. ``stop_alpha`` (default: ``alpha``): the upper end that rules radii out (and abstains)
comes from the confidence sequence at this level instead (larger: it shrinks sooner; the
decision is then wrong with probability up to ``stop_alpha``, which can only drop a certificate
the example would have reached, never add one). ``futility="projected"`` (default ``"cap"``):
a radius is also given up when even if p_A equalled the upper end (at ``stop_alpha``), the lower
bound at the cap from the expected count (:func:`~smoothcert.stats.sequential.projected_lower_at`)
would not certify it.

Sampling stops when every radius is certified or ruled out ("decided"); when the others are out
of reach by the cap ``n`` or it is reached ("cap"); the same for a cap the run's budget set lower,
or at its deadline ("budget"); or at an interrupt ("interrupted"). Whatever the
reason, the record's radius is the noise's certificate at the final lower bound, which is a
(1 - alpha) lower bound on p_A at ANY stopping time (see ``smoothcert.stats.sequential``): every
record is a valid certificate. The thresholds are never inverted by hand: the decisions compare
the noise's (or the perturbation's) own radius of a bound with the grid.

Interrupts and resume: an example an interrupt stops keeps its bound at the last check (valid,
as at any stopping time) and is written with stop "interrupted". Resume certifies such examples
(and those never written) again from scratch: the example's noise comes from its ``(seed, index)``
stream and the check times are fixed, so the restart replays the same draws and gives exactly
the record of an uninterrupted run. That is what makes it valid: there is one outcome per
example, never a choice among several tries (re-running with fresh noise until certified would
spend alpha again at every try). Continuing the interrupted sequence would be valid too (the
confidence sequence holds at all times), but needs its counts saved; the replay is simpler and
identical. With a budget the shares after a resume differ, so records may differ; each is valid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import MAX_GROUP
from smoothcert.certifiers.topk import topk_records_sequential
from smoothcert.errors import ConfigError, check_alpha, check_count
from smoothcert.outcomes import ABSTAIN
from smoothcert.perturbation import is_parametric
from smoothcert.records import SequentialRecord
from smoothcert.stats.sequential import (
    PRIOR,
    best_lower_at,
    confidence_sequence,
    projected_lower_at,
)

__all__ = [
    "DECIDED",
    "SCHEDULE",
    "CertificationInterrupted",
    "SequentialOutcome",
    "SequentialPlan",
    "SequentialRun",
    "SharedBudget",
    "certify_group_sequential",
    "certify_sequential_many",
    "check_times",
    "parse_budget",
    "sequential_header",
]

DECIDED, CAP, BUDGET, INTERRUPTED = "decided", "cap", "budget", "interrupted"
FIRST_CHECK, GROWTH = 16, 1.25  # check times 16, 20, 25, 32, 40, ... (at most 25% overshoot)
SCHEDULE = f"geometric from {FIRST_CHECK} by x{GROWTH}"
CONFIDENCE_SEQUENCE = f"beta-binomial mixture, Beta{PRIOR} prior, two-sided, running intersection"
FUTILITY = ("cap", "projected")  # give a radius up: all-successes / expected count at the cap


def check_stopping(alpha: float, stop_alpha: float | None, futility: str) -> float:
    """The level of the stopping-only upper end (``stop_alpha``, default ``alpha``), after
    checking both stopping settings (one-line ConfigError naming the setting)."""
    if futility not in FUTILITY:
        raise ConfigError(
            f"certify.futility={futility!r} must be one of {', '.join(FUTILITY)} (cap: today's "
            "stop; projected: also stop when the expected lower bound at the cap cannot certify)"
        )
    if stop_alpha is None:
        return alpha
    if isinstance(stop_alpha, bool) or not (
        isinstance(stop_alpha, int | float) and alpha <= stop_alpha < 1
    ):
        raise ConfigError(
            f"certify.stop_alpha={stop_alpha!r} must be a number in [certify.alpha={alpha}, 1) "
            "(the level of the upper bound that only decides when to stop), or null for alpha"
        )
    return float(stop_alpha)


def check_times(cap: int) -> list[int]:
    """The sample counts after which the bounds are checked, up to and including ``cap``: one
    fixed schedule (``FIRST_CHECK`` times ``GROWTH`` to the k, rounded up), cut at ``cap``."""
    times, t = [], FIRST_CHECK
    while t < cap:
        times.append(t)
        t = max(t + 1, math.ceil(t * GROWTH))
    return [*times, cap] if cap > 0 else []


@dataclass(frozen=True)
class SequentialOutcome:
    """One example's sequential certificate: the selected class, the certificate ``(predict,
    radius)`` at the final lower bound, the estimation ``samples`` and the ``count`` of c_hat
    among them, the final bounds (the upper one at ``stop_alpha``: it only decided when to
    stop), why sampling stopped, the largest certified grid radius (nan: none) and the class
    counts ``[K]`` of the estimation samples (for top-k)."""

    c_hat: int
    predict: int
    radius: float
    samples: int
    count: int
    p_lower: float
    p_upper: float
    stop: str
    grid_radius: float
    counts: Tensor


class CertificationInterrupted(KeyboardInterrupt):
    """An interrupt (Ctrl-C, or SIGTERM seen through ``interrupted``) during sequential
    certification, carrying the outcomes of the examples in progress at their last check
    (stop reason "interrupted", each still a valid certificate)."""

    def __init__(self, outcomes: list[SequentialOutcome]) -> None:
        super().__init__("sequential certification interrupted")
        self.outcomes = outcomes


def certifiable_radius(smooth: Smooth, p: np.ndarray, dim: int) -> np.ndarray:
    """The radius ``smooth`` certifies from a lower bound ``p`` (vectorized), -inf where it
    abstains (p <= 1/2, or a parametric radius of 0: ``Smooth.bound_to_certificate``'s rule)."""
    p = np.asarray(p, dtype=np.float64)
    if is_parametric(smooth.perturbation):
        radius = np.asarray(smooth.perturbation.radius(p), dtype=np.float64)
        return np.where((p > 0.5) & (radius > 0), radius, -np.inf)
    radius = np.asarray(smooth.noise.radius(p, smooth.norm, dim), dtype=np.float64)
    return np.where(p > 0.5, radius, -np.inf)


def certify_sequential_many(
    smooth: Smooth,
    xs: Sequence[Tensor],
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    radii: Sequence[float],
    *,
    caps: Sequence[int] | None = None,
    deadline: float | None = None,
    interrupted: Callable[[], bool] | None = None,
    stop_alpha: float | None = None,
    futility: str = "cap",
) -> list[SequentialOutcome]:
    """Sequential CERTIFY of each example of ``xs`` (one shape, samples packed into shared
    forward passes, rounds up to the check times), deciding every radius of ``radii``.

    Guarantee: with probability at least 1 - alpha over each example's noise, if a class is
    returned then g(x + delta) equals it for every ||delta|| < radius, whatever the stopping
    reason. ``caps[e]`` (default ``n``) caps example ``e``'s estimation samples (a budget's share);
    past ``deadline`` (``time.perf_counter()``), undecided examples stop with "budget". When
    ``interrupted()`` turns True, or on KeyboardInterrupt, the examples in progress stop at their
    last check and :class:`CertificationInterrupted` carries them. Without caps and deadline
    the outcomes depend only on the model, the examples, the generators and these settings.
    ``stop_alpha`` and ``futility`` change only when sampling stops (module docstring).
    """
    n0, n, alpha = check_count(n0, "n0"), check_count(n, "n"), check_alpha(alpha)
    stop_level = check_stopping(alpha, stop_alpha, futility)
    batch_size = check_count(batch_size, "batch_size")
    grid = np.sort(np.asarray(list(radii), dtype=np.float64))
    if grid.size == 0:
        raise ConfigError("sequential certification needs at least one radius in certify.radii")
    xs, size = list(xs), len(xs)
    caps = [n] * size if caps is None else [min(n, max(0, int(c))) for c in caps]
    dim = xs[0].numel()
    streams = [smooth._stream(x, g) for x, g in zip(xs, generators, strict=True)]
    counts = torch.zeros(size, smooth.num_classes, dtype=torch.long)
    drawn = np.zeros(size, dtype=np.int64)
    lower, upper = np.zeros(size), np.ones(size)
    stops: list[str | None] = [None] * size
    plans = [check_times(cap) for cap in caps]
    with smooth._certification_mode(xs[0]):
        c_hats = smooth._counts(xs, [n0] * size, batch_size, streams).argmax(dim=1).tolist()
        for e in range(size):
            if caps[e] == 0:
                stops[e] = BUDGET if n > 0 else CAP
        signal = None
        while active := [e for e in range(size) if stops[e] is None]:
            targets = [next(t for t in plans[e] if t > drawn[e]) for e in active]
            nums = [t - int(drawn[e]) for e, t in zip(active, targets, strict=True)]
            try:
                more = smooth._counts([xs[e] for e in active], nums, batch_size,
                                      [streams[e] for e in active]).cpu()  # fmt: skip
            except KeyboardInterrupt:
                signal = INTERRUPTED
                break
            counts[active] += more
            drawn[active] = targets
            index = torch.tensor([c_hats[e] for e in active])
            s = counts[active].gather(1, index[:, None])[:, 0].numpy()
            low, up = confidence_sequence(s, drawn[active], alpha)
            if stop_level != alpha:  # the upper end at the stopping level
                up = confidence_sequence(s, drawn[active], stop_level)[1]
            lower[active] = np.maximum(lower[active], low)
            upper[active] = np.minimum(upper[active], up)
            active_caps = [caps[e] for e in active]
            best = best_lower_at(s, drawn[active], active_caps, alpha)
            if futility == "projected":
                projected = projected_lower_at(s, drawn[active], active_caps, upper[active], alpha)
                best = np.minimum(best, projected)
            best = np.maximum(best, lower[active])
            reach = [
                certifiable_radius(smooth, v, dim) for v in (lower[active], upper[active], best)
            ]
            settled = (reach[0][:, None] >= grid) | (reach[1][:, None] < grid)
            decided = settled | (reach[2][:, None] < grid)  # or out of reach by the cap
            late = deadline is not None and time.perf_counter() > deadline
            stop_now = interrupted is not None and interrupted()
            for row, e in enumerate(active):
                if settled[row].all():
                    stops[e] = DECIDED
                elif decided[row].all() or drawn[e] >= caps[e]:  # out of reach, or at the cap
                    stops[e] = CAP if caps[e] >= n else BUDGET
                elif late:
                    stops[e] = BUDGET
            if stop_now:
                signal = INTERRUPTED
                break
    if signal is not None:
        for e in range(size):
            stops[e] = stops[e] or INTERRUPTED
    outcomes = []
    for e in range(size):
        reach = float(certifiable_radius(smooth, lower[e], dim))
        certified = grid[grid <= reach]
        c_hat, ok = c_hats[e], reach > -np.inf
        outcomes.append(
            SequentialOutcome(
                c_hat=c_hat,
                predict=c_hat if ok else ABSTAIN,
                radius=reach if ok else 0.0,
                samples=int(drawn[e]),
                count=int(counts[e, c_hat]),
                p_lower=float(lower[e]),
                p_upper=float(upper[e]),
                stop=str(stops[e]),
                grid_radius=float(certified.max()) if certified.size else math.nan,
                counts=counts[e].clone(),
            )
        )
    if signal is not None:
        raise CertificationInterrupted(outcomes)
    return outcomes


def outcome_record(idx: int, label: int, outcome: SequentialOutcome, seconds: float):
    """The record of one example's outcome (``SequentialRecord``)."""
    o = outcome
    return SequentialRecord(
        idx, label, o.predict, o.radius, int(o.predict == label), seconds,
        o.samples, o.count, o.p_lower, o.stop, o.grid_radius,
    )  # fmt: skip


@dataclass(frozen=True)
class SequentialPlan:
    """What a group's sequential certification needs beside the examples: CERTIFY's ``n0``, ``n``
    (the cap), ``alpha``, ``batch_size``, the grid ``radii``, and the group's ``caps`` and
    ``deadline`` (a budget's share; None: n each, no deadline) and the interrupt flag."""

    n0: int
    n: int
    alpha: float
    batch_size: int
    radii: tuple[float, ...]
    caps: tuple[int, ...] | None = None
    deadline: float | None = None
    interrupted: Callable[[], bool] | None = None
    stop_alpha: float | None = None
    futility: str = "cap"

    def __getitem__(self, item: int):  # (n0, n, alpha, batch_size) like CERTIFY's settings
        return (self.n0, self.n, self.alpha, self.batch_size)[item]


def sequential_header(
    radii: Sequence[float],
    budget: int | str | None,
    stop_alpha: float | None = None,
    futility: str = "cap",
) -> dict[str, object]:
    """The header settings of sequential records (beside n0, n, alpha): the mode, the grid it
    decides, the budget, the confidence sequence and the check schedule (resume keys all), and
    the stopping settings where they are not the defaults (so default headers stay as before)."""
    header: dict[str, object] = {
        "sequential": True,
        "radii": [float(r) for r in radii],
        "budget": budget,
        "confidence_sequence": CONFIDENCE_SEQUENCE,
        "checks": SCHEDULE,
    }
    if stop_alpha is not None:
        header["stop_alpha"] = float(stop_alpha)
    if futility != "cap":
        header["futility"] = futility
    return header


def certify_group_sequential(
    smooth: Smooth,
    indices: Sequence[int],
    xs: Sequence[Tensor],
    labels: Sequence[int],
    generators: Sequence[torch.Generator],
    plan: SequentialPlan,
    ks: Sequence[int] | None = None,
) -> tuple[list[SequentialRecord], list | None, list[SequentialOutcome], bool]:
    """The records of a group (and, given ``ks``, their top-k records from the same counts with
    anytime-valid bounds), the outcomes, and whether it was interrupted (then the records are
    those of the examples at their last check, stop reason "interrupted"; the caller writes them
    and re-raises). Each ``time`` is an equal share of the group's seconds."""
    start = time.perf_counter()
    options = {"caps": plan.caps, "deadline": plan.deadline, "interrupted": plan.interrupted,
               "stop_alpha": plan.stop_alpha, "futility": plan.futility}  # fmt: skip
    settings = (plan.n0, plan.n, plan.alpha, plan.batch_size)
    try:
        outcomes = certify_sequential_many(smooth, xs, *settings, generators, plan.radii, **options)
        stopped = False
    except CertificationInterrupted as interrupt:
        outcomes, stopped = interrupt.outcomes, True
    share = (time.perf_counter() - start) / len(xs)
    records = [
        outcome_record(idx, label, outcome, share)
        for idx, label, outcome in zip(indices, labels, outcomes, strict=True)
    ]
    counts = [o.counts.tolist() for o in outcomes]
    topk = (
        None if not ks else topk_records_sequential(records, counts, ks, smooth.sigma, plan.alpha)
    )
    return records, topk, outcomes, stopped


# ----- the run's budget ----------------------------------------------------------------------

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(
    budget: int | str | None, name: str = "certify.budget"
) -> tuple[int | None, float | None]:
    """``(samples, seconds)`` of a budget: an int is forward passes, a string a time ("90s",
    "10m", "1.5h"); None: no budget. A one-line ConfigError otherwise."""
    if budget is None:
        return None, None
    if isinstance(budget, int) and not isinstance(budget, bool):
        return check_count(budget, name), None
    text = str(budget).strip().lower()
    if text and text[-1] in UNITS:
        try:
            seconds = float(text[:-1]) * UNITS[text[-1]]
        except ValueError:
            seconds = -1.0
        if seconds > 0 and math.isfinite(seconds):
            return None, seconds
    raise ConfigError(
        f"{name}={budget!r} must be a number of forward passes (e.g. 2000000) or a time with a "
        "unit s, m or h (e.g. 10m), or null"
    )


class SharedBudget:
    """A run's budget (this process's share: ``samples`` forward passes or ``seconds``, split over
    ``world`` processes), shared over its remaining examples as they come.

    The rule: a group of g examples, with m examples left (the group included), gets an equal
    share of what is left: each estimation cap is ``min(n, (samples_left - m * n0) // m)``
    (the n0 selection samples are counted too), and the group's deadline is ``now + g *
    seconds_left / m``. Examples that stop early leave their unused share to the later ones,
    so hard examples get more. ``spend`` counts what a group drew. In budget mode the records
    depend on the order, group size and process count (the shares do): the price of sharing.
    """

    def __init__(self, samples: int | None, seconds: float | None, n0: int, n: int) -> None:
        self.samples, self.seconds, self.n0, self.n = samples, seconds, n0, n
        self.total, self.left_examples, self.began = samples, 0, time.perf_counter()

    def start(self, examples: int, world: int) -> None:
        """This process certifies ``examples``; its share of the budget is 1 / ``world``."""
        self.left_examples = max(1, examples)
        self.began = time.perf_counter()
        if self.total is not None:
            self.samples = self.total // world

    def plan(self, group: int) -> tuple[tuple[int, ...] | None, float | None]:
        """The caps and deadline of the next ``group`` examples."""
        left = max(self.left_examples, group)
        caps = deadline = None
        if self.samples is not None:
            cap = min(self.n, max(0, (self.samples - left * self.n0) // left))
            caps = (cap,) * group
        if self.seconds is not None:
            now = time.perf_counter()
            remaining = max(0.0, self.seconds - (now - self.began))
            deadline = now + group * remaining / left
        return caps, deadline

    def spend(self, group: int, samples: int) -> None:
        """A group of ``group`` examples drew ``samples`` (estimation and selection)."""
        self.left_examples = max(0, self.left_examples - group)
        if self.samples is not None:
            self.samples = max(0, self.samples - samples)


class SequentialRun:
    """The sequential mode of a CERTIFY run (what its callback holds): the header settings, the
    shared budget, and each group's records; ``start`` before the first group."""

    def __init__(
        self,
        n0: int,
        n: int,
        alpha: float,
        radii: Sequence[float],
        budget: int | str | None,
        stop_alpha: float | None = None,
        futility: str = "cap",
    ) -> None:
        self.n0, self.n, self.alpha, self.radii = n0, n, alpha, tuple(float(r) for r in radii)
        check_stopping(alpha, stop_alpha, futility)
        self.stop_alpha, self.futility = stop_alpha, futility
        self.header = sequential_header(self.radii, budget, stop_alpha, futility)
        self.budget = SharedBudget(*parse_budget(budget), n0, n)
        self.interrupted: Callable[[], bool] | None = None

    @staticmethod
    def group_size(batch_size: int) -> int:
        """Examples certified together: as many as fill a batch at the first check (at most
        ``MAX_GROUP``). Rounds then share forward passes, which matters for a small model, where
        a round's fixed cost would otherwise dominate; the records do not depend on it."""
        return max(1, min(MAX_GROUP, batch_size // FIRST_CHECK))

    def start(self, examples: int, world: int, interrupted: Callable[[], bool] | None) -> None:
        """This process certifies ``examples`` of the run (on ``world`` processes);
        ``interrupted()`` says when to stop (e.g. Lightning's SIGTERM flag)."""
        self.budget.start(examples, world)
        self.interrupted = interrupted

    def group(
        self, smooth: Smooth, group: tuple, batch_size: int, ks: Sequence[int] | None = None
    ) -> tuple[list[tuple[SequentialRecord, object]], bool]:
        """``(record, top-k record or None)`` of each example of ``group`` (indices, inputs,
        labels, generators), and whether an interrupt stopped it (its records are then valid,
        stop reason "interrupted", and the caller stops the run after writing them)."""
        caps, deadline = self.budget.plan(len(group[0]))
        plan = SequentialPlan(self.n0, self.n, self.alpha, batch_size, self.radii, caps, deadline,
                              self.interrupted, self.stop_alpha, self.futility)  # fmt: skip
        records, topk, outcomes, stopped = certify_group_sequential(smooth, *group, plan, ks)
        self.budget.spend(len(records), sum(o.samples + self.n0 for o in outcomes))
        return list(zip(records, topk or [None] * len(records), strict=True)), stopped
