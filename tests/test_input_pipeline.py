"""The faster input pipeline: default samples unchanged bit for bit, and the reduced-decode switch bounded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.registry import build_dataset
from datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_downsampling,
    crop_matrix,
    decode_reduction,
    jpeg_size,
    normalize_image,
    read_image,
    read_image_bytes,
    read_image_reduced,
    warp_image,
)
from utils.errors import ConfigError

# Measured on the five real MPII sample persons, 8 training epochs + validation (docs/data.md): the mean
# absolute crop difference of a reduced decode is 0.8-1.9 grey levels at factor 2 and 3.0-3.8 at factor 4,
# its 99th percentile at most 46. The bounds leave some room for other OpenCV/libjpeg builds.
MEAN_DIFFERENCE_BOUND = 5.0
PLAIN_IMREAD_FLAGS = (
    cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
)  # written out, not the project's constant
PERCENTILE_99_BOUND = 60.0


def mpii_section(mpii_data: Path, **overrides) -> dict:
    return {"name": "mpii", "root": str(mpii_data), "annotation_file": "annot/sample.json", **overrides}


def formula_normalize(image: np.ndarray, color: str) -> torch.Tensor:
    """The normalisation as it was written before the lookup tables: float temporaries and a transpose."""
    if color == "rgb_imagenet":
        image = image[:, :, ::-1]
    array = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def grey_levels(image: torch.Tensor) -> np.ndarray:
    return image.numpy().transpose(1, 2, 0) * IMAGENET_STD * 255.0 + IMAGENET_MEAN * 255.0


@pytest.mark.parametrize("color", ["bgr_imagenet", "rgb_imagenet"])
def test_normalize_image_is_bit_identical_to_the_formula(color):
    rng = np.random.default_rng(0)
    for shape in ((256, 256, 3), (256, 192, 3), (7, 5, 3), (1, 1, 3)):
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        ours = normalize_image(image, color)
        assert ours.dtype == torch.float32 and ours.is_contiguous()
        assert torch.equal(ours, formula_normalize(image, color))
    every_level = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)
    assert torch.equal(normalize_image(every_level, color), formula_normalize(every_level, color))
    strided = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)[::2, 1::2]  # a non-contiguous view
    assert torch.equal(normalize_image(strided, color), formula_normalize(strided, color))
    floats = rng.uniform(0, 255, size=(6, 4, 3))  # not uint8: the formula itself
    assert torch.equal(normalize_image(floats, color), formula_normalize(floats, color))


@pytest.mark.parametrize("color", ["bgr_imagenet", "rgb_imagenet"])
def test_default_samples_equal_a_plain_full_decode(mpii_data, color):
    """With reduced_decode off, a sample is the full decode, one warp and the formula, bit for bit."""
    dataset = build_dataset(mpii_section(mpii_data, color=color), "valid", train=True)
    assert dataset.reduced_decode is False
    for epoch, force_flip in ((0, None), (1, True), (2, False)):
        dataset.force_flip = force_flip
        for index, record in enumerate(dataset.records):
            sample = dataset[(index, epoch)]
            draw = dataset.draw_augmentation(index, epoch)
            image = cv2.imdecode(np.fromfile(str(record.image), np.uint8), PLAIN_IMREAD_FLAGS)
            width = image.shape[1] if draw.flipped else None
            matrix = crop_matrix(draw.center, draw.scale, draw.rotation, (256, 256), flip_image_width=width)
            expected = formula_normalize(warp_image(image, matrix, (256, 256)), color)
            assert torch.equal(sample["image"], expected)


def test_jpeg_size_reads_the_header(mpii_data, tmp_path):
    for path in sorted((mpii_data / "images").glob("*.jpg")):
        height, width = read_image(path).shape[:2]
        assert jpeg_size(read_image_bytes(path)) == (width, height)
    png = tmp_path / "image.png"
    cv2.imwrite(str(png), np.zeros((10, 20, 3), np.uint8))
    assert jpeg_size(read_image_bytes(png)) is None
    assert jpeg_size(np.frombuffer(b"\xff\xd8\xff", np.uint8)) is None
    assert jpeg_size(np.zeros(0, np.uint8)) is None


def test_decode_reduction_needs_the_crop_to_shrink_by_the_factor():
    assert [decode_reduction(d) for d in (0.5, 1.0, 1.99, 2.0, 3.99, 4.0, 7.9, 8.0, 30.0)] == [
        1, 1, 1, 2, 2, 4, 4, 8, 8,
    ]  # fmt: skip
    assert crop_downsampling(np.array([2.56, 2.56]), (256, 256)) == pytest.approx(2.0)
    assert crop_downsampling(np.array([1.92, 2.56]), (192, 256)) == pytest.approx(2.0)  # COCO: width decides


def test_read_image_reduced_factors_and_fallbacks(mpii_data, tmp_path):
    path = sorted((mpii_data / "images").glob("*.jpg"))[1]
    full = read_image(path)
    height, width = full.shape[:2]
    for downsampling, factor in ((1.5, 1), (2.5, 2), (5.0, 4), (9.0, 8)):
        image, used, size = read_image_reduced(path, downsampling)
        assert used == factor and size == (width, height)
        assert image.shape[:2] == (-(-height // factor), -(-width // factor))
        if factor == 1:
            assert np.array_equal(image, full)
    png = tmp_path / "photo.png"
    cv2.imwrite(str(png), full)
    image, used, size = read_image_reduced(png, 9.0)  # not a JPEG: always the full decode
    assert used == 1 and size == (width, height) and np.array_equal(image, full)


def test_reduced_decode_changes_crops_by_a_bounded_amount_and_never_the_targets(mpii_data):
    full = build_dataset(mpii_section(mpii_data), "valid", train=True)
    reduced = build_dataset(mpii_section(mpii_data, reduced_decode=True), "valid", train=True)
    factors = set()
    for epoch in range(3):
        for index, record in enumerate(full.records):
            a, b = full[(index, epoch)], reduced[(index, epoch)]
            assert torch.equal(a["target"], b["target"])
            assert torch.equal(a["target_weight"], b["target_weight"])
            for key in ("center", "scale", "rotation", "flipped", "joints"):
                np.testing.assert_array_equal(a["meta"][key], b["meta"][key])
            draw = full.draw_augmentation(index, epoch)
            factor = read_image_reduced(record.image, crop_downsampling(draw.scale, full.input_size))[1]
            factors.add(factor)
            difference = np.abs(grey_levels(a["image"]) - grey_levels(b["image"]))
            if factor == 1:
                assert torch.equal(a["image"], b["image"])
            else:
                assert 0 < difference.mean() < MEAN_DIFFERENCE_BOUND
                assert np.percentile(difference, 99) < PERCENTILE_99_BOUND
    assert {1, 2, 4} <= factors  # the sample persons cover a full decode and two reduction factors


def test_reduced_decode_keeps_the_full_decode_for_a_small_person(mpii_data):
    """A box that the crop does not shrink by 2 or more (small in the image) is decoded in full."""
    full = build_dataset(mpii_section(mpii_data), "valid", train=False)
    reduced = build_dataset(mpii_section(mpii_data, reduced_decode=True), "valid", train=False)
    for dataset in (full, reduced):
        for record in dataset.records:
            record.scale = np.array([1.2, 1.2])  # 240 px box -> 256 px crop: no downsampling
    for index in range(len(full)):
        assert torch.equal(full[index]["image"], reduced[index]["image"])


def test_reduced_decode_flipped_crop_lines_up_with_the_full_decode(mpii_data):
    """The flip is composed in the full image's frame (header width), so both decodes crop the same place."""
    full = build_dataset(mpii_section(mpii_data), "valid", train=True)
    reduced = build_dataset(mpii_section(mpii_data, reduced_decode=True), "valid", train=True)
    for dataset in (full, reduced):
        dataset.force_flip = True
        dataset.rotation_prob = 0.0
    for index in range(len(full)):
        a = grey_levels(full[(index, 0)]["image"])
        b = grey_levels(reduced[(index, 0)]["image"])
        shifted = np.abs(a[:, 4:] - b[:, :-4]).mean()  # a few pixels of misalignment would show here
        assert np.abs(a - b).mean() < shifted


def test_reduced_decode_is_a_config_key_of_every_builder(mpii_data, coco_data):
    dataset = build_dataset(mpii_section(mpii_data, reduced_decode=True), "valid", train=False)
    assert dataset.reduced_decode is True
    coco = {"name": "coco", "root": str(coco_data), "ann_file": "annotations/person_keypoints_sample.json"}
    assert build_dataset({**coco, "reduced_decode": True}, "valid", train=False).reduced_decode is True
    assert build_dataset(coco, "valid", train=False).reduced_decode is False
    for section in (mpii_section(mpii_data, reduced_decode="yes"), {**coco, "reduced_decode": 1}):
        with pytest.raises(ConfigError, match="data.reduced_decode: expected true or false"):
            build_dataset(section, "valid", train=False)


def test_reduced_decode_leaves_coco_masks_unchanged(coco_data):
    coco = {"name": "coco", "root": str(coco_data), "ann_file": "annotations/person_keypoints_sample.json"}
    full = build_dataset({**coco, "with_mask": True}, "valid", train=False)
    reduced = build_dataset({**coco, "with_mask": True, "reduced_decode": True}, "valid", train=False)
    for dataset in (full, reduced):
        for record in dataset.records:
            record.scale = record.scale * 3.0  # boxes 3x larger than the crop: factor 2 engages
    for index in range(len(full)):
        a, b = full[index], reduced[index]
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["target"], b["target"])
        assert np.abs(grey_levels(a["image"]) - grey_levels(b["image"])).mean() < MEAN_DIFFERENCE_BOUND


def test_a_worker_forked_after_opencv_ran_in_the_main_process_makes_the_same_samples(mpii_data):
    """No OpenCV thread setting inside workers: cv2.setNumThreads in a fork whose parent ran OpenCV's pool hangs."""
    dataset = build_dataset(mpii_section(mpii_data, reduced_decode=True), "valid", train=True)
    expected = [dataset[(index, 0)] for index in range(len(dataset))]  # starts OpenCV's pool here
    loader = DataLoader(dataset, batch_size=None, num_workers=1, timeout=120)
    for sample, want in zip(loader, expected):
        assert torch.equal(sample["image"], want["image"]) and torch.equal(sample["target"], want["target"])
