"""datasets/transforms.py read_image: its default decoder, simplejpeg, gives OpenCV's arrays on every real sample JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.transforms import decode_image, read_image, read_image_bytes
from tests.conftest import require_package


@pytest.fixture(scope="module")
def simplejpeg():
    """simplejpeg is in requirements.txt (the default decoder): skipped without it, failed under CI=true."""
    return require_package("simplejpeg")


def sample_jpegs(shared_data: Path) -> list[Path]:
    return sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def test_both_decoders_give_identical_arrays_on_the_real_samples(shared_data: Path, simplejpeg) -> None:
    images = sample_jpegs(shared_data)
    assert len(images) == 12  # MANIFEST.md: 5 MPII, 4 COCO, 3 OCHuman
    for path in images:
        opencv, turbo = read_image(path, decoder="opencv"), read_image(path)
        assert turbo.dtype == np.uint8 and turbo.shape == opencv.shape and turbo.flags["C_CONTIGUOUS"]
        assert np.array_equal(turbo, opencv), path


def test_reduced_decoding_and_other_formats_stay_with_opencv(
    shared_data: Path, tmp_path: Path, simplejpeg
) -> None:
    import cv2

    path = sample_jpegs(shared_data)[0]
    data = read_image_bytes(path)
    flags = cv2.IMREAD_REDUCED_COLOR_2
    assert np.array_equal(
        decode_image(data, path, flags, decoder="simplejpeg"),
        decode_image(data, path, flags, decoder="opencv"),
    )
    png = tmp_path / "image.png"
    cv2.imwrite(str(png), read_image(path))
    assert np.array_equal(read_image(png, decoder="simplejpeg"), read_image(path, decoder="opencv"))


def test_an_unknown_decoder_is_refused(shared_data: Path) -> None:
    with pytest.raises(ValueError, match="choose one of opencv, simplejpeg"):
        read_image(sample_jpegs(shared_data)[0], decoder="pillow")
