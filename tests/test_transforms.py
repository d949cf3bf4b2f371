"""Crop geometry and image I/O: the closed-form affine against HRNet's three-point construction with OpenCV."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from datasets.transforms import (
    affine_points,
    compose,
    get_affine_transform,
    horizontal_flip_matrix,
    normalize_image,
    read_image,
    sample_augmentation,
    warp_image,
)
from utils.errors import DataError


def three_point_affine(center, scale, rotation, output_size, shift=(0.0, 0.0), inverse=False):
    """HRNet's get_affine_transform: three corresponding points handed to cv2.getAffineTransform."""
    box = np.asarray(scale, dtype=np.float64) * 200.0
    out_w, out_h = output_size
    theta = math.radians(rotation)
    src_dir = np.array([0.5 * box[0] * math.sin(theta), -0.5 * box[0] * math.cos(theta)])
    dst_dir = np.array([0.0, -0.5 * out_w])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0] = np.asarray(center) + box * np.asarray(shift)
    src[1] = src[0] + src_dir
    src[2] = third(src[0], src[1])
    dst[0] = [0.5 * out_w, 0.5 * out_h]
    dst[1] = dst[0] + dst_dir
    dst[2] = third(dst[0], dst[1])
    if inverse:
        return cv2.getAffineTransform(dst.astype(np.float32), src.astype(np.float32))
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


@pytest.mark.parametrize("inverse", [False, True])
def test_closed_form_matches_the_three_point_construction(inverse):
    rng = np.random.default_rng(0)
    for _ in range(50):
        center = rng.uniform(0, 1000, size=2)
        s = rng.uniform(0.3, 6.0)
        rotation = rng.uniform(-60, 60)
        output_size = (int(rng.choice([192, 256])), 256)
        shift = tuple(rng.uniform(-0.2, 0.2, size=2))
        ours = get_affine_transform(
            center, np.array([s, s]), rotation, output_size, shift=shift, inverse=inverse
        )
        reference = three_point_affine(center, (s, s), rotation, output_size, shift, inverse)
        # Compare where it matters: on points of the box, to float32 precision of the reference.
        points = (
            rng.uniform(-1, 1, size=(8, 2)) * 100 * s + center
            if not inverse
            else rng.uniform(0, 256, size=(8, 2))
        )
        np.testing.assert_allclose(
            affine_points(points, ours), cv2.transform(points[None], reference)[0], atol=2e-2
        )


def test_inverse_composes_to_identity_and_centre_lands_in_the_middle():
    center, scale = np.array([320.5, 240.25]), np.array([1.7, 1.7])
    forward = get_affine_transform(center, scale, 25.0, (192, 256))
    backward = get_affine_transform(center, scale, 25.0, (192, 256), inverse=True)
    np.testing.assert_allclose(compose(backward, forward), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(compose(forward, backward), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(affine_points(center[None], forward), [[96.0, 128.0]])
    # Zoom: the box width (scale * 200) maps onto the output width.
    edge = affine_points(
        np.array([[center[0] + 170.0, center[1]]]), get_affine_transform(center, scale, 0.0, (192, 256))
    )
    np.testing.assert_allclose(edge, [[192.0, 128.0]])


def test_flip_matrix_mirrors_pixel_indices():
    flip = horizontal_flip_matrix(256)
    np.testing.assert_allclose(
        affine_points(np.array([[0.0, 5.0], [255.0, 7.0]]), flip), [[255.0, 5.0], [0.0, 7.0]]
    )
    np.testing.assert_allclose(compose(flip, flip), [[1, 0, 0], [0, 1, 0]])


def test_warp_moves_a_bright_pixel_where_affine_points_says():
    image = np.zeros((300, 400, 3), np.uint8)
    image[120, 250] = 255
    matrix = get_affine_transform(np.array([200.0, 150.0]), np.array([1.0, 1.0]), 30.0, (128, 128))
    crop = warp_image(image, matrix, (128, 128))
    assert crop.shape == (128, 128, 3)
    y, x = np.unravel_index(np.argmax(crop[:, :, 0]), crop.shape[:2])
    expected = affine_points(np.array([[250.0, 120.0]]), matrix)[0]
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    with pytest.raises(DataError, match="corrupt.jpg"):
        read_image(corrupt)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((4, 5, 3), (10, 20, 30), np.uint8))
    assert read_image(good).shape == (4, 5, 3) and tuple(read_image(good)[0, 0]) == (10, 20, 30)


def test_colour_modes():
    pixel = np.array([[[10, 120, 250]]], np.uint8)  # B, G, R
    bgr = normalize_image(pixel, "bgr_imagenet")[:, 0, 0].numpy()
    rgb = normalize_image(pixel, "rgb_imagenet")[:, 0, 0].numpy()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(bgr, (np.array([10, 120, 250]) / 255 - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(rgb, (np.array([250, 120, 10]) / 255 - mean) / std, rtol=1e-5)
    with pytest.raises(ValueError, match="color mode"):
        normalize_image(pixel, "hsv")


def test_augmentation_draws_stay_in_range():
    rng = np.random.default_rng(0)
    draws = [
        sample_augmentation(rng, scale_factor=0.25, rotation_factor=30.0, rotation_prob=0.6, flip_prob=0.5)
        for _ in range(4000)
    ]
    scales, rotations, flips = map(np.array, zip(*draws))
    assert scales.min() >= 0.75 and scales.max() <= 1.25
    assert np.abs(rotations).max() <= 60.0
    assert np.mean(rotations == 0.0) == pytest.approx(0.4, abs=0.03)
    assert np.mean(flips) == pytest.approx(0.5, abs=0.03)
