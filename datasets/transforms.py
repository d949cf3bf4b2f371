"""Image geometry for top-down pose: the affine crop of a person box, its augmentation and image I/O.

The crop follows HRNet's convention: the box (``scale * 200`` pixels wide, centred on ``center``) is mapped
onto the output so that the centre lands on the output's centre, rotated by ``rotation`` degrees
(counter-clockwise in the image as displayed) and scaled by ``output_width / (scale_x * 200)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.errors import ConfigError, DataError

PIXEL_STD = 200.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # the image files a folder input is read for
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# bearpaw/pytorch-pose's data/mpii/mean.pth.tar (RGB). Its color_normalize subtracts this mean and never
# divides by the std stored next to it, so the std of that mode is 1.
BEARPAW_MPII_MEAN = np.array([0.440442830324173, 0.4440267086029053, 0.4326828420162201], dtype=np.float32)


@dataclass(frozen=True)
class ColorMode:
    """How a ``data.color`` mode turns pixels into network input: ``(pixel[c] / 255 - mean[c]) / std[c]``.

    ``channel_order`` is the order of the input planes (BGR keeps OpenCV's order); ``mean`` and ``std`` are
    listed in that plane order. ``rule`` says it in words for another program (the ONNX sidecar).
    """

    channel_order: str
    mean: np.ndarray
    std: np.ndarray
    rule: str


COLOR_NORMALIZATION = {
    "bgr_imagenet": ColorMode(
        "BGR",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "channels in BGR order (as OpenCV reads an image), each normalised with the RGB ImageNet mean/std "
        "in list order: B with mean 0.485 std 0.229, G with 0.456 / 0.224, R with 0.406 / 0.225 "
        "(the released OKDHP/FPD MPII code does this; it is not the usual RGB convention)",
    ),
    "rgb_imagenet": ColorMode(  # HRNet
        "RGB",
        IMAGENET_MEAN,
        IMAGENET_STD,
        "channels in RGB order, normalised with the ImageNet mean/std: R 0.485/0.229, G 0.456/0.224, B 0.406/0.225",
    ),
    "rgb_bearpaw_mpii": ColorMode(
        "RGB",
        BEARPAW_MPII_MEAN,
        np.ones(3, np.float32),
        "channels in RGB order, minus bearpaw/pytorch-pose's MPII mean (R 0.4404, G 0.4440, B 0.4327), "
        "not divided by a std (its color_normalize)",
    ),
}
COLOR_MODES = tuple(COLOR_NORMALIZATION)


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
# Reduced JPEG decoding: libjpeg scales the DCT blocks by 1/2, 1/4 or 1/8 while decoding (``data.reduced_decode``).
REDUCED_IMREAD_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}
JPEG_START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn markers (not DHT, JPG, DAC)


def read_image_bytes(path: str | Path) -> np.ndarray:
    """The encoded bytes of an image file as a uint8 array; DataError for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    with open(path, "rb") as file:
        return np.frombuffer(file.read(), dtype=np.uint8)


JPEG_DECODERS = ("opencv", "simplejpeg")


def simplejpeg_decode(data: np.ndarray) -> np.ndarray | None:
    """A JPEG decoded by simplejpeg (libjpeg-turbo) exactly as OpenCV decodes it, or None when it cannot be.

    ``fastdct=False, fastupsample=False`` are libjpeg's accurate integer DCT and fancy upsampling, OpenCV's
    choices, which gave bit-identical pixels on every sample JPEG (benchmarks/jpeg_decoders.py checks it).
    simplejpeg never applies EXIF orientation, like ``IMREAD_IGNORE_ORIENTATION``. None (OpenCV then decodes)
    when simplejpeg is not installed, the bytes are not a JPEG, or libjpeg-turbo refuses the colour space
    (e.g. CMYK).
    """
    if jpeg_size(data) is None:
        return None
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        return simplejpeg.decode_jpeg(data.tobytes(), colorspace="BGR", fastdct=False, fastupsample=False)
    except ValueError:
        return None


def decode_image(
    data: np.ndarray, path: str | Path, flags: int = IMREAD_FLAGS, decoder: str = "simplejpeg"
) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8 with ``flags`` (EXIF orientation always ignored); DataError names a bad file.

    ``decoder="simplejpeg"`` (the default) decodes full-size JPEGs with simplejpeg: OpenCV's pixels bit for bit
    and faster (docs/benchmarks.md, "JPEG decoders"); reduced decoding (``flags`` other than the default), other
    formats and a missing simplejpeg use OpenCV, as ``decoder="opencv"`` always does.
    """
    if decoder not in JPEG_DECODERS:
        raise ValueError(f"decoder {decoder!r}: choose one of {', '.join(JPEG_DECODERS)}")
    if decoder == "simplejpeg" and flags == IMREAD_FLAGS and data.size:
        image = simplejpeg_decode(data)
        if image is not None:
            return image
    image = cv2.imdecode(data, flags | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image {path}: the file is empty or corrupt (expected a JPEG or PNG)")
    return image


def read_image(path: str | Path, decoder: str = "simplejpeg") -> np.ndarray:
    """Read an image as BGR uint8 in its stored pixel frame (EXIF orientation ignored); DataError names a bad file.

    ``decoder``: ``simplejpeg`` (the default; OpenCV where it cannot decode) or ``opencv`` (``decode_image``).
    """
    return decode_image(read_image_bytes(path), path, decoder=decoder)


def jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) stored in a JPEG's start-of-frame header, without decoding; None if not a JPEG."""
    raw = memoryview(np.ascontiguousarray(data, dtype=np.uint8))
    if len(raw) < 4 or raw[0] != 0xFF or raw[1] != 0xD8:
        return None
    offset = 2
    while offset + 9 <= len(raw):
        if raw[offset] != 0xFF:
            return None
        marker = raw[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in JPEG_START_OF_FRAME:
            height = int.from_bytes(raw[offset + 5 : offset + 7], "big")
            width = int.from_bytes(raw[offset + 7 : offset + 9], "big")
            return (width, height) if width and height else None
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        offset += 2 + int.from_bytes(raw[offset + 2 : offset + 4], "big")
    return None


def crop_downsampling(scale: np.ndarray | float, output_size: tuple[int, int]) -> float:
    """Image pixels per crop pixel of a box (``scale * 200`` wide onto ``output_size``): the zoom-out factor."""
    scale_x = float(np.broadcast_to(np.asarray(scale, dtype=np.float64), (2,))[0])
    return scale_x * PIXEL_STD / float(output_size[0])


def decode_reduction(downsampling: float) -> int:
    """The largest JPEG reduction (8, 4, 2) not above the crop's downsampling, else 1 (full decode)."""
    for factor in sorted(REDUCED_IMREAD_FLAGS, reverse=True):
        if downsampling >= factor:
            return factor
    return 1


def reduced_to_raw_matrix(factor: int) -> np.ndarray:
    """The 2x3 matrix from a 1/``factor`` decoded image's pixels to the full image's pixels.

    A reduced pixel ``j`` is the average of full pixels ``factor * j .. factor * j + factor - 1`` (one DCT
    block scaled down), so its centre is ``factor * j + (factor - 1) / 2``.
    """
    offset = (factor - 1) / 2.0
    return np.array([[float(factor), 0.0, offset], [0.0, float(factor), offset]])


def read_image_reduced(path: str | Path, downsampling: float) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Decode a JPEG at the largest reduction its crop's ``downsampling`` allows (full decode otherwise).

    Returns the image, the reduction used (1 for a full decode, always for a non-JPEG file or a header this
    reader does not understand) and the full image's (width, height) from the JPEG header, which the flip
    needs. Reduced pixels are block averages: they differ slightly from bilinear samples of the full image.
    """
    data = read_image_bytes(path)
    factor = decode_reduction(downsampling)
    size = jpeg_size(data) if factor > 1 else None
    if size is not None:
        image = decode_image(data, path, REDUCED_IMREAD_FLAGS[factor])
        expected = (-(-size[1] // factor), -(-size[0] // factor))
        if image.shape[:2] == expected:
            return image, factor, size
    image = decode_image(data, path)
    return image, 1, (image.shape[1], image.shape[0])


def check_color(color: str) -> None:
    """Raise ConfigError for a ``data.color`` value that is not one of ``COLOR_MODES``."""
    if color not in COLOR_MODES:
        raise ConfigError(
            f"data.color: unknown colour mode '{color}'; expected one of {', '.join(COLOR_MODES)}"
        )


def _normalize_tables(mode: ColorMode) -> np.ndarray:
    """(3, 256) float32: ``(v / 255 - mean[c]) / std[c]`` for every grey level v, in the old formula's float32 ops."""
    levels = np.arange(256, dtype=np.float32)[None, :]
    return np.ascontiguousarray((levels / 255.0 - mode.mean[:, None]) / mode.std[:, None])


NORMALIZE_TABLES = {name: _normalize_tables(mode) for name, mode in COLOR_NORMALIZATION.items()}


def normalize_image(image: np.ndarray, color: str) -> torch.Tensor:
    """BGR uint8 HxWx3 -> normalised float tensor 3xHxW, as ``COLOR_NORMALIZATION[color]`` says.

    ``bgr_imagenet`` keeps OpenCV's BGR channel order but subtracts the RGB ImageNet mean (the released
    OKDHP/FPD MPII code does this); ``rgb_imagenet`` converts to RGB first (HRNet's COCO practice);
    ``rgb_bearpaw_mpii`` is RGB minus bearpaw's MPII mean, without a std (bearpaw/pytorch-pose).
    Each plane goes through a 256-entry lookup table straight into the CHW output: the same float32 values as
    ``(image / 255 - mean) / std`` (bit for bit), without the float temporaries and the transposing copy.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"unknown color mode '{color}'; expected one of {COLOR_MODES}")
    mode = COLOR_NORMALIZATION[color]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:  # not a decoded 8-bit BGR image
        array = image[:, :, ::-1] if mode.channel_order == "RGB" else image
        array = (array.astype(np.float32) / 255.0 - mode.mean) / mode.std
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    height, width = image.shape[:2]
    planes = cv2.split(np.ascontiguousarray(image))
    sources = (2, 1, 0) if mode.channel_order == "RGB" else (0, 1, 2)
    output = np.empty((3, height, width), dtype=np.float32)
    tables = NORMALIZE_TABLES[color]
    for channel, source in enumerate(sources):
        cv2.LUT(planes[source], tables[channel], dst=output[channel])
    return torch.from_numpy(output)


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
