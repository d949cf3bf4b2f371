"""The heatmap codec: one object builds training targets and decodes predictions.

Keeping encode and decode together means sigma, stride and the sub-pixel rules cannot drift apart between
training and test (mmpose's lesson). Rules follow SPEC B / HRNet exactly:

- encode: a Gaussian of peak 1 and std ``sigma`` on a (6*sigma+1)^2 patch centred on the joint's heatmap
  pixel rounded to an integer (``int(x / stride + 0.5)``); target weight = visibility, set to 0 when the
  patch lies fully outside the heatmap.
- decode: argmax per joint; when the peak is not on the border, move 0.25 pixel towards the higher neighbour
  in x and in y (HRNet's exact condition: ``1 < x < w - 1`` and ``1 < y < h - 1``); map back to the image with the inverse crop transform.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from datasets.transforms import get_affine_transform


class HeatmapCodec:
    """Encode joints into Gaussian heatmaps and decode heatmaps into joint positions."""

    def __init__(self, input_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.stride = np.array(self.input_size, dtype=np.float64) / np.array(
            self.heatmap_size, dtype=np.float64
        )

    def to_dict(self) -> dict[str, list[int] | float]:
        """Plain data, as checkpoints record it (``from_dict`` rebuilds the codec)."""
        return {
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
            "sigma": self.sigma,
        }

    @classmethod
    def from_dict(cls, values: dict) -> HeatmapCodec:
        return cls(tuple(values["input_size"]), tuple(values["heatmap_size"]), float(values["sigma"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeatmapCodec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.input_size, self.heatmap_size, self.sigma))

    def encode(self, joints: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints (J, 2) in input-crop pixels + visibility (J,) -> target (J, h, w), target_weight (J, 1)."""
        width, height = self.heatmap_size
        radius = int(self.sigma * 3)
        centres = (self.input_to_heatmap(joints) + 0.5).astype(np.int64)  # (J, 2)
        weight = (np.asarray(visibility).reshape(-1) > 0).astype(np.float32)
        upper_left = centres - radius
        lower_right = centres + radius + 1
        outside = (
            (upper_left[:, 0] >= width)
            | (upper_left[:, 1] >= height)
            | (lower_right[:, 0] < 0)
            | (lower_right[:, 1] < 0)
        )
        weight[outside] = 0.0
        dx = np.arange(width)[None, :] - centres[:, 0:1]  # (J, w)
        dy = np.arange(height)[None, :] - centres[:, 1:2]  # (J, h)
        gx = np.where(np.abs(dx) <= radius, np.exp(-(dx**2) / (2 * self.sigma**2)), 0.0)
        gy = np.where(np.abs(dy) <= radius, np.exp(-(dy**2) / (2 * self.sigma**2)), 0.0)
        gy *= weight[:, None]  # a weight is 0 or 1, so zeroing here equals zeroing the product
        # The product is taken in float64 and rounded once into the float32 target (no float64 temporary).
        target = np.empty((len(centres), height, width), dtype=np.float32)
        np.multiply(gy[:, :, None], gx[:, None, :], out=target, casting="same_kind")
        return target, weight[:, None]

    @staticmethod
    def decode(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """Heatmaps (B, J, h, w) -> coordinates (B, J, 2) in heatmap pixels and peak values (B, J, 1)."""
        batch, joints, height, width = heatmaps.shape
        flat = heatmaps.detach().reshape(batch, joints, -1).float()
        maxvals, index = flat.max(dim=2)
        x = (index % width).float()
        y = torch.div(index, width, rounding_mode="floor").float()
        coords = torch.stack([x, y], dim=2)
        coords = coords * (maxvals > 0).unsqueeze(2).float()

        # Quarter-pixel refinement towards the higher neighbour, exactly where HRNet's get_final_preds (which
        # the released OKDHP/FPD code uses) applies it: 1 < x < w - 1 and 1 < y < h - 1, so a peak in the
        # first or second row/column is left unrefined (not only one on the border).
        xi, yi = coords[..., 0].long(), coords[..., 1].long()
        inner = (xi > 1) & (xi < width - 1) & (yi > 1) & (yi < height - 1)
        xl, xr = (xi - 1).clamp(0, width - 1), (xi + 1).clamp(0, width - 1)
        yu, yd = (yi - 1).clamp(0, height - 1), (yi + 1).clamp(0, height - 1)

        def at(ys: Tensor, xs: Tensor) -> Tensor:
            return flat.gather(2, (ys * width + xs).unsqueeze(2)).squeeze(2)

        diff_x = at(yi, xr) - at(yi, xl)
        diff_y = at(yd, xi) - at(yu, xi)
        shift = torch.stack([torch.sign(diff_x), torch.sign(diff_y)], dim=2) * 0.25
        coords = coords + shift * inner.unsqueeze(2).float()
        return coords, maxvals.unsqueeze(2)

    def heatmap_to_image_matrices(self, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """(B, 2, 3) matrices mapping heatmap pixels back to image pixels for each person box."""
        return np.stack(
            [
                get_affine_transform(c, s, 0.0, self.heatmap_size, inverse=True)
                for c, s in zip(np.asarray(centers, dtype=np.float64), np.asarray(scales, dtype=np.float64))
            ]
        )

    def decode_to_image(
        self, heatmaps: Tensor, centers: np.ndarray | Tensor, scales: np.ndarray | Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (B, J, h, w) + person boxes -> predictions (B, J, 2) in 0-based image pixels, maxvals."""
        coords, maxvals = self.decode(heatmaps)
        centers = torch.as_tensor(centers).double().cpu().numpy().reshape(-1, 2)
        scales = torch.as_tensor(scales).double().cpu().numpy().reshape(len(centers), -1)
        matrices = self.heatmap_to_image_matrices(centers, scales)
        coords_np = coords.double().cpu().numpy()
        preds = np.einsum("bij,bkj->bki", matrices[:, :, :2], coords_np) + matrices[:, None, :, 2]
        return preds, maxvals.cpu().numpy()

    def input_to_heatmap(self, points: np.ndarray) -> np.ndarray:
        """Points in input-crop pixels -> heatmap pixels."""
        return np.asarray(points, dtype=np.float64) / self.stride

    @staticmethod
    def flip_back(flipped: Tensor, flip_permutation: np.ndarray | list[int], shift: bool = True) -> Tensor:
        """Undo a horizontal input flip on heatmaps: mirror, swap left/right joints, optionally shift right 1 px.

        The one-pixel shift (HRNet's ``SHIFT_HEATMAP``) compensates the half-stride misalignment that
        mirroring an even-sized heatmap introduces.
        """
        perm = torch.as_tensor(np.asarray(flip_permutation), dtype=torch.long, device=flipped.device)
        restored = flipped.flip(dims=[3]).index_select(1, perm)
        if shift:
            # Column k takes column k-1; column 0 keeps its own values (as HRNet does).
            restored = torch.cat([restored[..., :1], restored[..., :-1]], dim=3)
        return restored
