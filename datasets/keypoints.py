"""Joint names, left/right flip pairs and OKS sigmas of the supported skeletons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """Everything that depends on the dataset's joint definition."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...] = ()  # joint-index pairs a drawing connects

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def flip_permutation(self) -> np.ndarray:
        """Index array p such that flipped[:, j] = original[:, p[j]] swaps every left/right pair."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


MPII = Skeleton(
    name="mpii",
    joint_names=(
        "r_ankle",
        "r_knee",
        "r_hip",
        "l_hip",
        "l_knee",
        "l_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "r_wrist",
        "r_elbow",
        "r_shoulder",
        "l_shoulder",
        "l_elbow",
        "l_wrist",
    ),  # fmt: skip
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (10, 11),
        (11, 12),
        (12, 7),
        (7, 13),
        (13, 14),
        (14, 15),
    ),  # fmt: skip
)

COCO = Skeleton(
    name="coco",
    joint_names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),  # fmt: skip
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    limbs=(
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 12),
        (5, 11),
        (6, 12),
        (5, 6),
        (5, 7),
        (6, 8),
        (7, 9),
        (8, 10),
        (1, 2),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (4, 6),
    ),  # fmt: skip
)

# Per-keypoint OKS sigmas of the COCO keypoint challenge (pycocotools' defaults).
COCO_OKS_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)

# COCO joints of the upper body, used by half-body augmentation.
COCO_UPPER_BODY = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)

SKELETONS = {"mpii": MPII, "coco": COCO}
