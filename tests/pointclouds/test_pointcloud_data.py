"""The bundled procedural clouds and the ShapeNet-part reader (on a tiny fixture written in the
official layout): normalization before resampling, channels, labels, splits, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothcert.data.pointclouds import (
    SHAPENET_FOLDER,
    SHAPENET_PARTS,
    ShapeNetPart,
    Shapes3D,
    build_pointcloud_splits,
    normalize_cloud,
)
from smoothcert.errors import ConfigError

SYNSETS = {"Airplane": "02691156", "Mug": "03797390"}  # the fixture's two folders


def test_normalize_cloud_centres_and_scales_to_the_unit_ball():
    points = np.random.default_rng(0).normal(size=(300, 3)) * 5 + 7
    unit = normalize_cloud(points)
    assert np.allclose(unit.mean(axis=0), 0, atol=1e-12)
    assert np.linalg.norm(unit, axis=1).max() == pytest.approx(1.0)


def test_shapes3d_is_seeded_normalized_and_labelled_by_category():
    data = Shapes3D(10, "train", seed=3, num_points=256)
    again, other = Shapes3D(10, "train", seed=3, num_points=256), Shapes3D(10, "val", seed=3)
    assert (
        data.classes[:3] == ["chair/seat", "chair/back", "chair/legs"] and len(data.classes) == 13
    )
    for i in range(10):
        x, labels = data[i]
        assert x.shape == (3 + 3 + 5, 256) and labels.shape == (256,)
        assert torch.equal(x, again[i][0]) and not torch.equal(x[:3], other[i][0][:3])
        assert float(x[:3].norm(dim=0).max()) <= 1 + 1e-6
        assert torch.allclose(x[3:6].norm(dim=0), torch.ones(256), atol=1e-5)  # unit normals
        category = i % 5
        assert torch.equal(x[6:], torch.eye(5)[category][:, None].expand(5, 256))
        assert set(labels.tolist()) <= set(data.groups[category].parts)
        assert len(set(labels.tolist())) >= 2  # several parts per object
    # the raw cloud (before resampling) is what is normalized: its farthest point has norm 1
    points, *_ = data.load(0)
    assert np.linalg.norm(points, axis=1).max() == pytest.approx(1.0)
    without = Shapes3D(2, "train", seed=3, num_points=256, normals=False)
    assert without[0][0].shape == (3 + 5, 256) and torch.equal(without[0][0][:3], data[0][0][:3])


def write_shapenet_tree(root: Path) -> Path:
    """A tiny ShapeNet-part tree in the official layout: all 16 categories listed, two of them
    with files (3 airplanes, 2 mugs), the split lists in the official entry format."""
    folder = root / SHAPENET_FOLDER
    (folder / "train_test_split").mkdir(parents=True)
    listing = "\n".join(f"{name}\t{i:08d}" for i, name in enumerate(SHAPENET_PARTS))
    for name, synset in SYNSETS.items():
        listing = listing.replace(
            f"{name}\t{list(SHAPENET_PARTS).index(name):08d}", f"{name}\t{synset}"
        )
    (folder / "synsetoffset2category.txt").write_text(listing + "\n")
    rng = np.random.default_rng(0)
    entries = {"train": [], "val": [], "test": []}
    for name, synset, count, first in (
        ("Airplane", SYNSETS["Airplane"], 3, 0),
        ("Mug", SYNSETS["Mug"], 2, 36),
    ):
        (folder / synset).mkdir()
        for k in range(count):
            token = f"tok{name}{k}"
            xyz = rng.normal(size=(40, 3)) * 3 + 10  # far from the origin: normalization matters
            normals = rng.normal(size=(40, 3))
            labels = first + rng.integers(0, SHAPENET_PARTS[name], 40)
            np.savetxt(folder / synset / f"{token}.txt", np.column_stack([xyz, normals, labels]))
            split = ("train", "test", "val")[k % 3]
            entries[split].append(f"shape_data/{synset}/{token}")
    for split, names in entries.items():
        (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps(names)
        )
    return root


def test_shapenet_part_reads_the_official_layout(tmp_path):
    root = write_shapenet_tree(tmp_path)
    splits = build_pointcloud_splits(
        "shapenet_part", root, num_points=64, train_size=None, val_size=None, test_size=None
    )
    train = splits.train
    assert len(train) == 2 and len(splits.test) == 2 and len(splits.val) == 1
    assert len(train.classes) == 50 and train.groups[11].category == "Mug"
    assert train.groups[11].parts == (36, 37) and train.groups[0].parts == (0, 1, 2, 3)
    x, labels = train[0]
    assert x.shape == (3 + 3 + 16, 64)
    assert torch.equal(x[6:, 0], torch.eye(16)[0])  # Airplane: line 0
    assert set(labels.tolist()) <= {0, 1, 2, 3}
    path = tmp_path / SHAPENET_FOLDER / SYNSETS["Airplane"] / "tokAirplane0.txt"
    raw = np.loadtxt(path)
    unit = normalize_cloud(raw[:, :3])  # the whole file, before resampling
    for point, normal in zip(x[:3].T.double().numpy(), x[3:6].T.double().numpy(), strict=True):
        row = np.flatnonzero(np.abs(unit - point).max(axis=1) < 1e-5)
        assert len(row) >= 1 and np.allclose(raw[row[0], 3:6], normal, atol=1e-5)
    mug = [i for i in range(len(splits.test)) if splits.test.category_of(i) == 11]
    assert mug and set(splits.test[mug[0]][1].tolist()) <= {36, 37}


def test_shapenet_part_problems_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="paths.data_dir") as error:
        build_pointcloud_splits("shapenet_part", tmp_path)
    assert "\n" not in str(error.value)
    root = write_shapenet_tree(tmp_path)
    with pytest.raises(ConfigError, match="part_groups"):
        build_pointcloud_splits("shapenet_part", root, part_groups=[[0, 1]])
    bad = root / SHAPENET_FOLDER / SYNSETS["Mug"] / "tokMug0.txt"
    table = np.loadtxt(bad)
    table[0, 6] = 3  # an airplane part on a mug
    np.savetxt(bad, table)
    mugs = ShapeNetPart(root, "train", num_points=8)
    with pytest.raises(ConfigError, match="part labels outside Mug"):
        [mugs[i] for i in range(len(mugs))]
    with pytest.raises(ConfigError, match="unknown for point clouds"):
        build_pointcloud_splits("modelnet", root)
