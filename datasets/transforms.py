"""Image geometry for top-down pose: the affine crop of a person box, its augmentation and image I/O.

The crop follows HRNet's convention: the box (``scale * 200`` pixels wide, centred on ``center``) is mapped
onto the output so that the centre lands on the output's centre, rotated by ``rotation`` degrees
(counter-clockwise in the image as displayed) and scaled by ``output_width / (scale_x * 200)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.errors import ConfigError, DataError

PIXEL_STD = 200.0
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
COLOR_MODES = ("bgr_imagenet", "rgb_imagenet")


def get_affine_transform(
    center: np.ndarray,
    scale: np.ndarray | float,
    rotation: float,
    output_size: tuple[int, int],
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    inverse: bool = False,
) -> np.ndarray:
    """The 2x3 matrix mapping image pixels into the output crop (or back, with ``inverse``).

    Closed form of HRNet's three-point construction: a similarity with zoom ``out_w / (scale_x * 200)``,
    rotation ``-rotation`` degrees and a translation that sends ``center + shift * box`` to the output centre.
    """
    scale_xy = np.broadcast_to(np.asarray(scale, dtype=np.float64), (2,))
    box_width = scale_xy[0] * PIXEL_STD
    out_w, out_h = output_size
    zoom = out_w / box_width
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    linear = zoom * np.array([[cos, sin], [-sin, cos]])
    src_center = np.asarray(center, dtype=np.float64) + scale_xy * PIXEL_STD * np.asarray(
        shift, dtype=np.float64
    )
    dst_center = np.array([out_w * 0.5, out_h * 0.5])
    if inverse:
        inv_linear = np.array([[cos, -sin], [sin, cos]]) / zoom
        return np.hstack([inv_linear, (src_center - inv_linear @ dst_center)[:, None]])
    return np.hstack([linear, (dst_center - linear @ src_center)[:, None]])


def horizontal_flip_matrix(width: int) -> np.ndarray:
    """The 2x3 matrix mirroring x in an image ``width`` pixels wide (pixel i goes to width - 1 - i)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def flip_center(center: np.ndarray, image_width: int) -> np.ndarray:
    """A point's position in the mirrored image (HRNet's ``c[0] = width - c[0] - 1``)."""
    flipped = np.asarray(center, dtype=np.float64).copy()
    flipped[0] = image_width - 1.0 - flipped[0]
    return flipped


def crop_matrix(
    center: np.ndarray,
    scale: np.ndarray | float,
    rotation: float,
    output_size: tuple[int, int],
    *,
    flip_image_width: int | None = None,
) -> np.ndarray:
    """The image->crop matrix of one sample; with ``flip_image_width``, HRNet's flip-then-crop as one matrix.

    HRNet mirrors the whole image first, moves the centre to ``width - 1 - x`` and then crops the mirrored
    image around it. Cropping the mirrored image with ``M`` equals cropping the original with ``M @ F`` where
    ``F`` mirrors image pixels, so the sample stays one warp of the raw image (no flipped copy). ``center``
    is the box centre in the raw (unflipped) image.
    """
    if flip_image_width is None:
        return get_affine_transform(center, scale, rotation, output_size)
    mirrored = get_affine_transform(flip_center(center, flip_image_width), scale, rotation, output_size)
    return compose(mirrored, horizontal_flip_matrix(flip_image_width))


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of ``outer(inner(x))``."""
    full_outer = np.vstack([outer, [0.0, 0.0, 1.0]])
    full_inner = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (full_outer @ full_inner)[:2]


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to an (N, 2) array of points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Warp an image with a 2x3 matrix into ``output_size`` (w, h): bilinear, zero border."""
    return cv2.warpAffine(
        image, matrix.astype(np.float64), (int(output_size[0]), int(output_size[1])), flags=cv2.INTER_LINEAR
    )


# Annotations are in the stored pixel frame: never apply a JPEG's EXIF orientation tag (HRNet reads with
# the same flags), or a tagged image would come out rotated against its keypoints.
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as BGR uint8 in its stored pixel frame (EXIF orientation ignored); DataError names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, IMREAD_FLAGS) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image {path}: the file is empty or corrupt (expected a JPEG or PNG)")
    return image


def check_color(color: str) -> None:
    """Raise ConfigError for a ``data.color`` value that is not one of ``COLOR_MODES``."""
    if color not in COLOR_MODES:
        raise ConfigError(
            f"data.color: unknown colour mode '{color}'; expected one of {', '.join(COLOR_MODES)}"
        )


def normalize_image(image: np.ndarray, color: str) -> torch.Tensor:
    """BGR uint8 HxWx3 -> normalised float tensor 3xHxW.

    ``bgr_imagenet`` keeps OpenCV's BGR channel order but subtracts the RGB ImageNet mean (the released
    OKDHP/FPD MPII code does this); ``rgb_imagenet`` converts to RGB first (HRNet's COCO practice).
    """
    if color not in COLOR_MODES:
        raise ValueError(f"unknown color mode '{color}'; expected one of {COLOR_MODES}")
    if color == "rgb_imagenet":
        image = image[:, :, ::-1]
    array = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def sample_augmentation(
    rng: np.random.Generator,
    *,
    scale_factor: float,
    rotation_factor: float,
    rotation_prob: float,
    flip_prob: float,
) -> tuple[float, float, bool]:
    """Draw (scale multiplier, rotation in degrees, flip) as SPEC B / HRNet do."""
    scale = float(np.clip(rng.standard_normal() * scale_factor + 1.0, 1.0 - scale_factor, 1.0 + scale_factor))
    rotation = 0.0
    if rng.random() < rotation_prob:
        rotation = float(
            np.clip(rng.standard_normal() * rotation_factor, -2 * rotation_factor, 2 * rotation_factor)
        )
    flip = bool(rng.random() < flip_prob)
    return scale, rotation, flip
