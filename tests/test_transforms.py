"""Crop geometry and image I/O: the closed-form affine against HRNet's three-point construction with OpenCV."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from datasets.transforms import (
    affine_points,
    compose,
    crop_matrix,
    flip_center,
    get_affine_transform,
    horizontal_flip_matrix,
    normalize_image,
    read_image,
    sample_augmentation,
    warp_image,
)
from tests.hrnet_reference import three_point_affine
from utils.errors import DataError

EXIF_ORIENTATION = 0x0112


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


def jpeg_with_orientation(pixels_bgr: np.ndarray, orientation: int) -> bytes:
    """A JPEG of these pixels (stored as they are) whose EXIF orientation tag says ``orientation``."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels_bgr[:, :, ::-1])).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def test_read_image_ignores_exif_orientation(tmp_path, mpii_data):
    """Annotations are in the stored pixel frame: a tag saying "rotate 90" must not turn the image (HRNet)."""
    source = read_image(sorted((mpii_data / "images").glob("*.jpg"))[0])  # a real 1280x720 photo
    tagged = tmp_path / "orientation6.jpg"
    tagged.write_bytes(jpeg_with_orientation(source, 6))
    assert Image.open(tagged).getexif()[EXIF_ORIENTATION] == 6
    untagged = tmp_path / "untagged.jpg"
    untagged.write_bytes(jpeg_with_orientation(source, 1))
    raw = cv2.imdecode(np.fromfile(str(untagged), np.uint8), cv2.IMREAD_COLOR)  # same compressed pixels
    rotated = cv2.imdecode(
        np.fromfile(str(tagged), np.uint8), cv2.IMREAD_COLOR
    )  # OpenCV's default honours it
    assert rotated.shape == (1280, 720, 3)  # the failure this guards against
    image = read_image(tagged)
    assert image.shape == raw.shape == (720, 1280, 3)
    assert np.array_equal(image, raw)

    narrow = np.zeros((100, 300, 3), np.uint8)
    narrow[:, :150] = (0, 0, 255)  # left half red: a rotation or mirror would move it
    wide = tmp_path / "wide.jpg"
    wide.write_bytes(jpeg_with_orientation(narrow, 6))
    loaded = read_image(wide)
    assert loaded.shape == (100, 300, 3)  # 100 high, 300 wide
    assert loaded[50, 20, 2] > 200 and loaded[50, 280, 2] < 50


def test_no_image_read_bypasses_read_image():
    """Every image read of the project goes through read_image (or uses the same orientation flag)."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    folders = ("datasets", "utils", "models", "losses", "tools", "benchmarks", "tests")
    for path in [*root.glob("*.py"), *(p for folder in folders for p in (root / folder).rglob("*.py"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            reads = "cv2.imread(" in line or "cv2.imdecode(" in line or "Image.open(" in line
            if reads and "IMREAD_IGNORE_ORIENTATION" not in line and "IMREAD_FLAGS" not in line:
                offenders.append(f"{path.relative_to(root)}:{number}")
    allowed = {"tests/test_transforms.py"}  # the EXIF test decodes with OpenCV's defaults on purpose
    assert [o for o in offenders if o.split(":")[0] not in allowed] == []


def test_flip_composed_into_the_warp_equals_flip_then_warp(mpii_data):
    """warp(flip(img), M(c')) == warp(img, M(c') @ F): HRNet's full-image flip, as one warp of the raw image."""
    image = read_image(sorted((mpii_data / "images").glob("*.jpg"))[1])
    height, width = image.shape[:2]
    rng = np.random.default_rng(3)
    for _ in range(6):
        center = rng.uniform([200, 150], [width - 200, height - 150])
        scale = np.full(2, rng.uniform(1.5, 3.0))
        rotation = float(rng.uniform(-60, 60))
        mirrored_center = np.array([width - 1 - center[0], center[1]])
        np.testing.assert_allclose(flip_center(center, width), mirrored_center)
        reference_matrix = three_point_affine(mirrored_center, scale, rotation, (256, 256))
        reference = cv2.warpAffine(image[:, ::-1], reference_matrix, (256, 256), flags=cv2.INTER_LINEAR)
        matrix = crop_matrix(center, scale, rotation, (256, 256), flip_image_width=width)
        ours = warp_image(image, matrix, (256, 256))
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
        # Points: a raw-image point lands where HRNet puts its mirrored copy.
        points = rng.uniform([0, 0], [width, height], size=(10, 2))
        mirrored_points = np.stack([width - 1 - points[:, 0], points[:, 1]], axis=1)
        np.testing.assert_allclose(
            affine_points(points, matrix),
            cv2.transform(mirrored_points[None], reference_matrix)[0],
            atol=2e-2,
        )
    np.testing.assert_allclose(
        crop_matrix(center, scale, rotation, (256, 256)),
        get_affine_transform(center, scale, rotation, (256, 256)),
    )


def test_colour_modes():
    pixel = np.array([[[10, 120, 250]]], np.uint8)  # B, G, R
    bgr = normalize_image(pixel, "bgr_imagenet")[:, 0, 0].numpy()
    rgb = normalize_image(pixel, "rgb_imagenet")[:, 0, 0].numpy()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(bgr, (np.array([10, 120, 250]) / 255 - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(rgb, (np.array([250, 120, 10]) / 255 - mean) / std, rtol=1e-5)
    with pytest.raises(ValueError, match="color mode"):
        normalize_image(pixel, "hsv")


def test_bearpaw_colour_mode_is_its_color_normalize(mpii_data):
    """rgb_bearpaw_mpii = bearpaw's load_image (RGB / 255) then color_normalize (minus its MPII mean, no std)."""
    bearpaw_mpii_mean = np.array([0.4404428, 0.4440267, 0.4326828])  # its data/mpii/mean.pth.tar, 'mean'
    path = sorted((mpii_data / "images").glob("*.jpg"))[0]
    rgb = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0  # as bearpaw reads an image
    expected = (rgb - bearpaw_mpii_mean).transpose(2, 0, 1)
    ours = normalize_image(read_image(path), "rgb_bearpaw_mpii").numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)


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
