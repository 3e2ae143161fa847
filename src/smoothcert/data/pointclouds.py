"""Point clouds for part segmentation: bundled procedural objects (``shapes3d``, no download) and
ShapeNet-part in its official layout (``shapenet_part``).

An example is ``(x, labels)``: ``x`` a float32 ``[C, N]`` tensor whose channels are the point
coordinates ``xyz`` (3), the unit surface normals (3, when ``normals``) and a one-hot code of the
object's category (``num_categories``), repeated on every point; ``labels`` the ``[N]`` global part
ids (int64). Only the ``xyz`` channels are ever smoothed (``perturbation=xyz``); the normals and
the category code stay as they are, as in paper 003 (Sec. 6.3).

Normalization (paper 003, Sec. 6.3, and the ShapeNet-part loader): each cloud is centred at the
mean of all its points and divided by its largest point norm (the farthest point has norm 1), on
the whole cloud (the file, or the ``raw_points`` sampled from the surfaces) *before* ``num_points``
are drawn from it with replacement; the draw is seeded by ``(seed, split, index)`` so an example
is the same every time it is read. So every cloud lies in the unit ball, and sigma and radii are in
units of the object's radius.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from smoothcert.errors import ConfigError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SHAPENET_FOLDER = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
# ShapeNet-part's 16 categories in the order of synsetoffset2category.txt, with their part counts;
# global part ids are consecutive blocks in this order (Airplane 0-3, ..., Table 47-49).
SHAPENET_PARTS = {
    "Airplane": 4, "Bag": 2, "Cap": 2, "Car": 4, "Chair": 4, "Earphone": 3, "Guitar": 3,
    "Knife": 2, "Lamp": 4, "Laptop": 2, "Motorbike": 6, "Mug": 2, "Pistol": 3, "Rocket": 3,
    "Skateboard": 3, "Table": 3,
}  # fmt: skip


@dataclass(frozen=True)
class PartGroup:
    """A category and the global ids of its parts (the labels its points may carry)."""

    category: str
    parts: tuple[int, ...]
    part_names: tuple[str, ...]


def part_groups_of(counts: Sequence[tuple[str, Sequence[str]]]) -> list[PartGroup]:
    """Groups with consecutive global part ids from ``(category, part names)`` in order."""
    groups, start = [], 0
    for category, names in counts:
        groups.append(PartGroup(category, tuple(range(start, start + len(names))), tuple(names)))
        start += len(names)
    return groups


def normalize_cloud(points: np.ndarray) -> np.ndarray:
    """``points [M, 3]`` centred at their mean and divided by the largest norm (unit ball)."""
    centred = points - points.mean(axis=0, keepdims=True)
    scale = float(np.sqrt((centred**2).sum(axis=1)).max())
    return centred / (scale if scale > 0 else 1.0)


def encode(
    points: np.ndarray,
    normals: np.ndarray | None,
    category: int,
    num_categories: int,
) -> torch.Tensor:
    """``[C, N]`` float32: xyz, then the normals (if given), then the one-hot category."""
    onehot = np.zeros((num_categories, len(points)), dtype=np.float32)
    onehot[category] = 1.0
    channels = [points.T.astype(np.float32)]
    if normals is not None:
        channels.append(normals.T.astype(np.float32))
    return torch.from_numpy(np.concatenate([*channels, onehot]))


def resample(
    points: np.ndarray, normals: np.ndarray, labels: np.ndarray, num: int, seed: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num`` points drawn with replacement (the protocol's resampling), seeded by ``seed``."""
    index = np.random.default_rng(list(seed)).integers(0, len(points), num)
    return points[index], normals[index], labels[index]


class PointCloudSet(Dataset):
    """The part every point-cloud dataset shares: ``load(i)`` gives one normalized cloud
    ``(points [M, 3], normals [M, 3], labels [M], category)``; ``__getitem__`` resamples it to
    ``num_points`` and encodes it (kept in memory after the first read)."""

    groups: list[PartGroup]

    def __init__(self, split: str, num_points: int, normals: bool, seed: int) -> None:
        if split not in SPLIT_CODES:
            raise ConfigError(f"split={split!r} is not one of train, val, test")
        if int(num_points) < 1:
            raise ConfigError(f"data.num_points={num_points} must be >= 1, e.g. 512")
        self.split, self.num_points, self.normals, self.seed = split, int(num_points), normals, seed
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def classes(self) -> list[str]:
        """Every part's name, ``category/part``, by global part id."""
        return [f"{g.category}/{p}" for g in self.groups for p in g.part_names]

    @property
    def num_categories(self) -> int:
        return len(self.groups)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        raise NotImplementedError

    def category_of(self, index: int) -> int:
        return self.load(index)[3]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self.cache:
            points, normals, labels, category = self.load(index)
            seed = (self.seed, SPLIT_CODES[self.split], index, 1)
            points, normals, labels = resample(points, normals, labels, self.num_points, seed)
            x = encode(points, normals if self.normals else None, category, self.num_categories)
            self.cache[index] = (x, torch.from_numpy(labels.astype(np.int64)))
        return self.cache[index]


# ----- procedural objects ------------------------------------------------------------------------


def _box(rng, m, centre, size):
    """``m`` points uniform on the surface of an axis-aligned box, with outward normals."""
    size = np.asarray(size, dtype=np.float64)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]]).repeat(2)
    face = rng.choice(6, m, p=areas / areas.sum())
    axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
    points = (rng.random((m, 3)) - 0.5) * size
    points[np.arange(m), axis] = sign * size[axis] / 2
    normals = np.zeros((m, 3))
    normals[np.arange(m), axis] = sign
    return points + np.asarray(centre), normals


def _frustum(rng, m, base, r0, r1, height, caps=(False, False)):
    """``m`` points on a vertical truncated cone (radius ``r0`` at ``base``, ``r1`` at
    ``base + height``; a cylinder if equal) and optionally its bottom/top discs."""
    side = np.pi * (r0 + r1) * np.hypot(height, r0 - r1)
    discs = [np.pi * r**2 if c else 0.0 for r, c in zip((r0, r1), caps, strict=True)]
    areas = np.array([side, *discs])
    which = rng.choice(3, m, p=areas / areas.sum())
    theta = rng.random(m) * 2 * np.pi
    # side: height fraction t with density proportional to r(t) (uniform on the surface), by
    # inverting its CDF (r0 t + (r1 - r0) t^2 / 2) / ((r0 + r1) / 2) = u
    u, half_slope = rng.random(m), (r1 - r0) / 2
    if abs(half_slope) > 1e-12:
        root = np.sqrt(r0**2 + 4 * half_slope * u * (r0 + r1) / 2)
        t = (root - r0) / (2 * half_slope)
    else:
        t = u
    radius = np.where(which == 0, r0 + (r1 - r0) * t, 0.0)
    y = np.where(which == 0, t * height, np.where(which == 1, 0.0, height))
    disc_r = np.sqrt(rng.random(m)) * np.where(which == 1, r0, r1)
    radius = np.where(which == 0, radius, disc_r)
    points = np.stack([radius * np.cos(theta), y, radius * np.sin(theta)], axis=1)
    side_normal = np.stack([height * np.cos(theta), (r0 - r1) * np.ones(m), height * np.sin(theta)])
    normals = side_normal.T / np.linalg.norm(side_normal.T, axis=1, keepdims=True)
    normals[which == 1] = (0.0, -1.0, 0.0)
    normals[which == 2] = (0.0, 1.0, 0.0)
    return points + np.asarray(base), normals


def _handle(rng, m, centre, major, minor):
    """``m`` points on the outer half of a torus in the xy plane (a mug's handle)."""
    theta = (rng.random(m) - 0.5) * np.pi  # around the ring: the half with x > 0
    phi = rng.random(m) * 2 * np.pi
    ring = np.stack([np.cos(theta), np.sin(theta), np.zeros(m)], axis=1)
    tube = np.cos(phi)[:, None] * ring + np.sin(phi)[:, None] * np.array([0.0, 0.0, 1.0])
    return centre + major * ring + minor * tube, tube


def _chair(rng):
    w, d, seat_y = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    t, leg, back = rng.uniform(0.06, 0.14), rng.uniform(0.06, 0.12), rng.uniform(0.7, 1.3)
    parts = [(0, _box, ((0, seat_y, 0), (w, t, d)))]
    parts.append((1, _box, ((0, seat_y + t / 2 + back / 2, -d / 2 + t / 2), (w, back, t))))
    for sx in (-1, 1):
        for sz in (-1, 1):
            centre = (sx * (w - leg) / 2, (seat_y - t / 2) / 2, sz * (d - leg) / 2)
            parts.append((2, _box, (centre, (leg, seat_y - t / 2, leg))))
    return parts


def _table(rng):
    w, d, h = rng.uniform(1.2, 2.2), rng.uniform(0.8, 1.4), rng.uniform(0.8, 1.2)
    t, leg = rng.uniform(0.05, 0.12), rng.uniform(0.06, 0.14)
    parts = [(0, _box, ((0, h, 0), (w, t, d)))]
    if rng.random() < 0.5:  # four legs, or one pedestal
        for sx in (-1, 1):
            for sz in (-1, 1):
                centre = (sx * (w - leg) / 2, (h - t / 2) / 2, sz * (d - leg) / 2)
                parts.append((1, _box, (centre, (leg, h - t / 2, leg))))
    else:
        parts.append((1, _frustum, ((0, 0, 0), 2 * leg, leg, h - t / 2)))
    return parts


def _lamp(rng):
    base_r, base_h = rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.12)
    pole_r, pole_h = rng.uniform(0.02, 0.05), rng.uniform(0.8, 1.6)
    shade_h, top = rng.uniform(0.3, 0.6), base_h + pole_h
    shade = ((0, top - shade_h / 2, 0), rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.3), shade_h)
    return [
        (0, _frustum, ((0, 0, 0), base_r, base_r, base_h, (True, True))),
        (1, _frustum, ((0, base_h, 0), pole_r, pole_r, pole_h)),
        (2, _frustum, shade),
    ]


def _mug(rng):
    r, h = rng.uniform(0.35, 0.55), rng.uniform(0.7, 1.2)
    major = rng.uniform(0.18, 0.3) * h
    return [
        (0, _frustum, ((0, 0, 0), r, r * rng.uniform(1.0, 1.2), h, (True, False))),
        (1, _handle, (np.array([r, h / 2, 0.0]), major, rng.uniform(0.03, 0.06))),
    ]


def _airplane(rng):
    length, body_r = rng.uniform(1.8, 2.6), rng.uniform(0.1, 0.18)
    span, chord, tail = rng.uniform(1.6, 2.6), rng.uniform(0.3, 0.5), rng.uniform(0.25, 0.45)
    x_tail = -length / 2 + chord / 3
    return [
        (0, _box, ((0, 0, 0), (length, 2 * body_r, 2 * body_r))),
        (1, _box, ((rng.uniform(-0.1, 0.2), 0, 0), (chord, 0.04, span))),
        (2, _box, ((x_tail, body_r + tail / 2, 0), (chord / 2, tail, 0.04))),
        (2, _box, ((x_tail, body_r / 2, 0), (chord / 2, 0.03, span / 3))),
    ]


# category -> (part names, builder of its parts: (local part, sampler, arguments))
PROCEDURAL: dict[str, tuple[tuple[str, ...], Callable]] = {
    "chair": (("seat", "back", "legs"), _chair),
    "table": (("top", "legs"), _table),
    "lamp": (("base", "pole", "shade"), _lamp),
    "mug": (("body", "handle"), _mug),
    "airplane": (("fuselage", "wings", "tail"), _airplane),
}


def _area(sampler: Callable, args: tuple) -> float:
    """A Monte-Carlo-free area estimate of one primitive (for splitting points among parts)."""
    if sampler is _box:
        a, b, c = args[1]
        return 2 * (a * b + a * c + b * c)
    if sampler is _handle:
        return 2 * np.pi**2 * args[1] * args[2]  # half a torus
    base, r0, r1, h, *caps = args
    caps = caps[0] if caps else (False, False)
    discs = sum(np.pi * r**2 for r, c in zip((r0, r1), caps, strict=True) if c)
    return np.pi * (r0 + r1) * np.hypot(h, r0 - r1) + discs


def procedural_object(
    category: int, rng: np.random.Generator, num: int, groups: Sequence[PartGroup]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num`` surface points of a random object of ``category`` (random shape parameters),
    split among its primitives by area: ``(points, normals, global part labels)``, not yet
    normalized."""
    name = groups[category].category
    parts = PROCEDURAL[name][1](rng)
    areas = np.array([_area(sampler, args) for _, sampler, args in parts])
    counts = rng.multinomial(num, areas / areas.sum())
    points, normals, labels = [], [], []
    for (local, sampler, args), m in zip(parts, counts, strict=True):
        p, n = sampler(rng, int(m), *args)
        points.append(p)
        normals.append(n)
        labels.append(np.full(int(m), groups[category].parts[local]))
    return np.concatenate(points), np.concatenate(normals), np.concatenate(labels)


class Shapes3D(PointCloudSet):
    """``size`` procedural objects of ``split`` (categories in turn: example ``i`` is category
    ``i mod 5``), each ``raw_points`` surface points with normals and part labels, normalized,
    then resampled to ``num_points``; object ``i`` of a split depends on ``(seed, split, i)``
    only, so the splits are fixed and disjoint in their random streams."""

    groups = part_groups_of([(name, parts) for name, (parts, _) in PROCEDURAL.items()])

    def __init__(
        self,
        size: int,
        split: str,
        seed: int = 0,
        num_points: int = 512,
        normals: bool = True,
        raw_points: int = 2048,
    ) -> None:
        super().__init__(split, num_points, normals, seed)
        self.size, self.raw_points = int(size), int(raw_points)

    def __len__(self) -> int:
        return self.size

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        category = index % self.num_categories
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        points, normals, labels = procedural_object(category, rng, self.raw_points, self.groups)
        return normalize_cloud(points), normals, labels, category

    def category_of(self, index: int) -> int:
        return index % self.num_categories


# ----- ShapeNet-part -----------------------------------------------------------------------------


def shapenet_root(data_dir: str | Path) -> Path:
    """``data_dir/shapenetcore_partanno_segmentation_benchmark_v0_normal`` (or ``data_dir``
    itself if it is that folder); a one-line ConfigError naming the setting if it is missing."""
    data_dir = Path(data_dir)
    root = data_dir if data_dir.name == SHAPENET_FOLDER else data_dir / SHAPENET_FOLDER
    if not (root / "synsetoffset2category.txt").is_file():
        raise ConfigError(
            f"data=shapenet_part: {root}/synsetoffset2category.txt not found: put the official "
            f"{SHAPENET_FOLDER} folder under paths.data_dir (or set data.data_dir=...)"
        )
    return root


class ShapeNetPart(PointCloudSet):
    """ShapeNet-part (official ``..._v0_normal`` layout): ``synsetoffset2category.txt``, one
    folder per synset of ``<token>.txt`` files with 7 columns ``x y z nx ny nz label`` (global
    part ids 0-49), and ``train_test_split/shuffled_<split>_file_list.json``. The category index
    is the line order of ``synsetoffset2category.txt``; part ids are the official blocks. With
    ``size`` only the first ``size`` files of the split are used (the order of the JSON list)."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        seed: int = 0,
        num_points: int = 2048,
        normals: bool = True,
        size: int | None = None,
    ) -> None:
        super().__init__(split, num_points, normals, seed)
        root = shapenet_root(data_dir)
        lines = (root / "synsetoffset2category.txt").read_text().split("\n")
        categories = [line.split() for line in lines if line.strip()]
        unknown = [name for name, _ in categories if name not in SHAPENET_PARTS]
        if unknown:
            raise ConfigError(f"{root}/synsetoffset2category.txt: unknown categories {unknown}")
        counts = [(n, [f"part{k}" for k in range(SHAPENET_PARTS[n])]) for n, _ in categories]
        self.groups = part_groups_of(counts)
        synsets = {synset: i for i, (_, synset) in enumerate(categories)}
        listing = root / "train_test_split" / f"shuffled_{split}_file_list.json"
        if not listing.is_file():
            raise ConfigError(f"data=shapenet_part: {listing} not found (the official split files)")
        self.files: list[tuple[Path, int]] = []
        for entry in json.loads(listing.read_text()):
            _, synset, token = entry.split("/")[-3:]
            self.files.append((root / synset / f"{token}.txt", synsets[synset]))
        if size is not None:
            self.files = self.files[: int(size)]
        if self.files and not self.files[0][0].is_file():
            missing = self.files[0][0]
            raise ConfigError(f"data=shapenet_part: {missing} (listed in {listing}) is missing")

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        path, category = self.files[index]
        data = np.loadtxt(path, dtype=np.float32).reshape(-1, 7)
        labels = data[:, 6].astype(np.int64)
        allowed = self.groups[category].parts
        if labels.min() < allowed[0] or labels.max() > allowed[-1]:
            raise ConfigError(f"{path}: part labels outside {self.groups[category].category}'s")
        return normalize_cloud(data[:, :3]), data[:, 3:6], labels, category

    def category_of(self, index: int) -> int:
        return self.files[index][1]


def check_pointcloud_dataset(name: str, data_dir: str | Path) -> None:
    """Cheap presence check before anything is built (one-line ConfigError)."""
    if name == "shapenet_part":
        shapenet_root(data_dir)
    elif name != "shapes3d":
        raise ConfigError(
            f"data.name={name!r} is unknown for point clouds: use shapes3d or shapenet_part"
        )


@dataclass
class PointSplits:
    """Train, validation and test point-cloud datasets (``get(split)`` as ``Splits``)."""

    train: PointCloudSet
    val: PointCloudSet
    test: PointCloudSet

    def get(self, split: str) -> PointCloudSet:
        if split not in SPLIT_CODES:
            raise ConfigError(f"split={split!r} is not one of train, val, test")
        return getattr(self, split)


def build_pointcloud_splits(
    name: str,
    data_dir: str | Path,
    seed: int = 0,
    num_points: int = 512,
    normals: bool = True,
    train_size: int | None = 1000,
    val_size: int | None = 100,
    test_size: int | None = 100,
    raw_points: int = 2048,
    part_groups: Sequence[Sequence[int]] | None = None,
    num_categories: int | None = None,
) -> PointSplits:
    """The three splits of ``shapes3d`` (sizes as given) or ``shapenet_part`` (the official
    split files; a size, if given, keeps the first examples of that split's list).
    ``part_groups`` and ``num_categories`` (the config's copies, which the model reads to
    restrict its predictions to a category's parts) must be the dataset's: a one-line
    ConfigError otherwise."""
    check_pointcloud_dataset(name, data_dir)
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    if name == "shapes3d":
        make = {s: Shapes3D(int(sizes[s]), s, seed, num_points, normals, raw_points) for s in sizes}
    else:
        make = {s: ShapeNetPart(data_dir, s, seed, num_points, normals, sizes[s]) for s in sizes}
    actual = [list(g.parts) for g in make["train"].groups]
    if part_groups is not None and [list(g) for g in part_groups] != actual:
        raise ConfigError(f"data.part_groups={list(part_groups)} is not {name}'s: use {actual}")
    if num_categories is not None and int(num_categories) != len(actual):
        raise ConfigError(f"data.num_categories={num_categories}: {name} has {len(actual)}")
    return PointSplits(**make)
