"""Person instance masks: decoded from COCO polygons or RLE, warped with the crop to heatmap resolution.

The mask of one person is decoded lazily, per sample, with pycocotools (``annToMask`` handles polygons,
compressed and uncompressed RLE). It is warped with the very matrix that crops the image (so rotation, scale
and flip match the keypoints) and anti-aliased by supersampling: each heatmap pixel is the fraction of its
footprint covered by the person, a float in [0, 1].
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from pycocotools.coco import COCO

from utils.errors import DataError

MASK_SUPERSAMPLING = 4


def instance_mask(coco: COCO, ann_id: int) -> np.ndarray:
    """The binary (H, W) uint8 mask of one annotation, from its polygons or RLE."""
    ann = coco.anns[ann_id]
    segmentation = ann.get("segmentation")
    if not segmentation:
        raise DataError(
            f"annotation {ann_id} (image {ann['image_id']}) has no segmentation; masks need COCO polygons or RLE"
        )
    with warnings.catch_warnings():  # pycocotools' decode trips NumPy 2's __array__(copy=...) deprecation
        warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept a copy keyword")
        return coco.annToMask(ann)


def input_to_heatmap_matrix(
    matrix: np.ndarray, input_size: tuple[int, int], heatmap_size: tuple[int, int]
) -> np.ndarray:
    """Turn an image->input-crop matrix into image->heatmap (heatmap pixel i sits at input pixel i * stride)."""
    factor = np.asarray(heatmap_size, dtype=np.float64) / np.asarray(input_size, dtype=np.float64)
    return np.asarray(matrix, dtype=np.float64) * factor[:, None]


def warp_mask(
    mask: np.ndarray,
    matrix: np.ndarray,
    output_size: tuple[int, int],
    supersampling: int = MASK_SUPERSAMPLING,
) -> np.ndarray:
    """Warp a binary mask with a 2x3 image->output matrix to ``output_size`` (w, h) as coverage in [0, 1].

    The output is rendered ``supersampling`` times finer, with the fine grid shifted so that the block of
    fine pixels averaged into output pixel i is centred on i: no half-pixel drift against the keypoints.
    """
    factor = int(supersampling)
    offset = (factor - 1) / 2.0
    fine = np.array([[factor, 0.0, offset], [0.0, factor, offset]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    width, height = int(output_size[0]), int(output_size[1])
    warped = cv2.warpAffine(
        mask.astype(np.float32), fine, (width * factor, height * factor), flags=cv2.INTER_LINEAR
    )
    coverage = warped.reshape(height, factor, width, factor).mean(axis=(1, 3))
    return np.clip(coverage, 0.0, 1.0).astype(np.float32)
