"""The heatmap codec: Gaussian targets, argmax + quarter-pixel decoding, flip-back, mapping to the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.input_pipeline import hrnet_generate_target
from datasets.codec import HeatmapCodec
from datasets.keypoints import MPII
from datasets.transforms import affine_points, get_affine_transform


def gaussian_heatmaps(points: np.ndarray, size: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """(1, J, h, w) Gaussians centred exactly on sub-pixel points (J, 2) in heatmap pixels."""
    width, height = size
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    maps = np.exp(
        -((xs[None] - points[:, 0, None, None]) ** 2 + (ys[None] - points[:, 1, None, None]) ** 2)
        / (2 * sigma**2)
    )
    return torch.from_numpy(maps[None].astype(np.float32))


def test_encode_shapes_peak_and_weights():
    codec = HeatmapCodec(input_size=(256, 256), heatmap_size=(64, 64), sigma=2)
    joints = np.array([[100.0, 60.0], [4.0, 250.0], [-40.0, 100.0], [100.0, 100.0]])
    target, weight = codec.encode(joints, np.array([1, 1, 1, 0]))
    assert target.shape == (4, 64, 64) and target.dtype == np.float32
    assert weight.shape == (4, 1) and weight.dtype == np.float32
    np.testing.assert_array_equal(weight[:, 0], [1, 1, 0, 0])  # patch fully outside -> 0; invisible -> 0
    assert target[0, 15, 25] == 1.0  # int(100 / 4 + 0.5) = 25, int(60 / 4 + 0.5) = 15
    assert target[0, 15, 25 + 3] == pytest.approx(np.exp(-9 / 8))
    assert target[0, 15, 25 + 7] == 0.0  # beyond the (6 sigma + 1) patch
    assert target[2].max() == 0.0 and target[3].max() == 0.0
    assert target[1, 63, 1] == 1.0  # a joint on the border keeps its in-range peak


def test_round_trip_of_random_subpixel_positions_is_within_half_a_heatmap_pixel():
    rng = np.random.default_rng(0)
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
    for _ in range(20):
        # Anywhere whose nearest heatmap pixel exists: x / stride < width - 0.5.
        joints = rng.uniform([0, 0], [189.99, 253.99], size=(17, 2))
        target, weight = codec.encode(joints, np.ones(17))
        coords, maxvals = codec.decode(torch.from_numpy(target)[None])
        assert np.all(weight == 1) and torch.all(maxvals == 1)
        error = np.abs(coords[0].numpy() - codec.input_to_heatmap(joints))
        assert error.max() <= 0.5 + 1e-9


def test_quarter_pixel_rule_moves_towards_the_higher_neighbour():
    rng = np.random.default_rng(1)
    points = rng.uniform(2, 29, size=(200, 2))
    points[:, 0] = np.round(points[:, 0]) + rng.choice([-0.4, -0.2, 0.2, 0.4], size=200)
    points[:, 1] = np.round(points[:, 1]) + rng.choice([-0.4, -0.2, 0.2, 0.4], size=200)
    coords, _ = HeatmapCodec.decode(gaussian_heatmaps(points, (32, 32)))
    coords = coords[0].numpy()
    # Argmax alone would leave offsets up to 0.4; the 0.25 step lands within 0.2 of the true position.
    np.testing.assert_allclose(coords - np.round(points), 0.25 * np.sign(points - np.round(points)))
    assert np.abs(coords - points).max() <= 0.2 + 1e-6


def test_no_shift_on_the_border_and_zero_for_empty_maps():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 0, 5] = 1.0  # peak on the top border
    maps[0, 0, 1, 5] = 0.5
    maps[0, 0, 0, 6] = 0.7
    maps[0, 1, 3, 1] = 1.0  # peak in column 1: HRNet's rule (1 < x) leaves it unrefined too
    maps[0, 1, 3, 2] = 0.6
    maps[0, 1, 4, 1] = 0.6
    maps[0, 2] = -1.0  # no positive response
    coords, maxvals = HeatmapCodec.decode(maps)
    np.testing.assert_allclose(coords[0, 0].numpy(), [5.0, 0.0])
    np.testing.assert_allclose(coords[0, 1].numpy(), [1.0, 3.0])
    np.testing.assert_allclose(coords[0, 2].numpy(), [0.0, 0.0])
    assert maxvals.shape == (1, 3, 1) and maxvals[0, 0, 0] == 1.0


def test_decode_to_image_inverts_the_crop():
    codec = HeatmapCodec(input_size=(256, 256), heatmap_size=(64, 64), sigma=2.0)
    centers = np.array([[400.0, 300.0], [120.5, 80.25]])
    scales = np.array([[2.0, 2.0], [0.9, 0.9]])
    rng = np.random.default_rng(2)
    heatmap_points = rng.integers(2, 61, size=(2, 16, 2)).astype(np.float64)
    maps = torch.cat([gaussian_heatmaps(p, (64, 64)) for p in heatmap_points])
    preds, maxvals = codec.decode_to_image(maps, centers, scales)
    assert preds.shape == (2, 16, 2) and maxvals.shape == (2, 16, 1)
    for b in range(2):
        forward = get_affine_transform(centers[b], scales[b], 0.0, (64, 64))
        np.testing.assert_allclose(affine_points(preds[b], forward), heatmap_points[b], atol=1e-6)


def test_flip_back_restores_the_joint_order_and_shifts_one_pixel():
    rng = np.random.default_rng(3)
    maps = torch.from_numpy(rng.random((2, 16, 8, 10)).astype(np.float32))
    permutation = MPII.flip_permutation()
    flipped = maps.flip(-1)[:, permutation]  # what the network sees for a mirrored input, ideally
    torch.testing.assert_close(HeatmapCodec.flip_back(flipped, permutation, shift=False), maps)
    shifted = HeatmapCodec.flip_back(flipped, permutation, shift=True)
    torch.testing.assert_close(shifted[..., 1:], maps[..., :-1])
    torch.testing.assert_close(shifted[..., 0], maps[..., 0])
    assert permutation[0] == 5 and permutation[10] == 15 and permutation[8] == 8


def test_encode_equals_hrnets_per_joint_loop():
    rng = np.random.default_rng(4)
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
    for _ in range(30):
        joints = rng.uniform([-40, -40], [230, 300], size=(17, 2))  # some near or beyond the borders
        visible = rng.integers(0, 2, size=17)
        target, weight = codec.encode(joints, visible)
        reference_target, reference_weight = hrnet_generate_target(codec, joints, visible)
        np.testing.assert_array_equal(weight, reference_weight)
        np.testing.assert_allclose(target, reference_target, rtol=0, atol=1e-6)
