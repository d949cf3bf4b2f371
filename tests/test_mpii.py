"""MPII loading (HRNet JSON and stacked-hourglass h5), the crop/encode/decode geometry on real images, PCKh."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.io
import torch

from datasets.codec import HeatmapCodec
from datasets.keypoints import MPII
from datasets.mpii import MPIIDataset, load_mpii_records
from datasets.pckh import load_pred_mat, save_gt_mat
from datasets.registry import DATASETS, build_dataset
from datasets.transforms import affine_points, get_affine_transform, read_image
from tests import hrnet_reference as hrnet
from utils.errors import ConfigError, DataError

GT_FILE = "annot/detections_our_format.mat"


def sample_section(mpii_data, **overrides):
    section = {
        "name": "mpii",
        "root": str(mpii_data),
        "annotation_file": "annot/sample.json",
        "gt_file": GT_FILE,
        "input_size": [256, 256],
        "heatmap_size": [64, 64],
    }
    return {**section, **overrides}


@pytest.fixture(scope="module")
def sample_entries(mpii_data):
    return json.loads((mpii_data / "annot" / "sample.json").read_text())


def test_json_records_are_adjusted_once_and_zero_based(mpii_data, sample_entries):
    records = load_mpii_records(mpii_data, "valid", annotation_file="annot/sample.json")
    assert len(records) == 5
    for record, entry in zip(records, sample_entries):
        s = entry["scale"]
        np.testing.assert_allclose(record.center, [entry["center"][0] - 1, entry["center"][1] + 15 * s - 1])
        np.testing.assert_allclose(record.scale, [1.25 * s, 1.25 * s])
        np.testing.assert_allclose(record.joints, np.array(entry["joints"]) - 1)
        np.testing.assert_array_equal(record.joints_vis, entry["joints_vis"])
        assert record.image == (mpii_data / "images" / entry["image"]).resolve()
    # First person, written out: HRNet's loader gives centre (965, 409.777), scale 5.898.
    np.testing.assert_allclose(records[0].center, [965.0, 340.0 + 15 * 4.718488 - 1], atol=1e-6)


def test_h5_records_agree_with_json_records(mpii_data):
    from_h5 = load_mpii_records(mpii_data, "valid", annotation_format="h5")
    from_json = load_mpii_records(mpii_data, "valid", annotation_file="annot/sample.json")
    assert len(from_h5) == 2958
    for h5_record, json_record in zip(from_h5, from_json):
        assert h5_record.image == json_record.image
        np.testing.assert_allclose(h5_record.center, json_record.center, atol=1e-4)  # adjusted exactly once
        np.testing.assert_allclose(h5_record.scale, json_record.scale, atol=1e-5)
        annotated = json_record.joints_vis > 0
        np.testing.assert_allclose(h5_record.joints[annotated], json_record.joints[annotated], atol=1.0)
        # h5 'visible' is an occlusion flag; the loader's mask is "annotated", like JSON joints_vis.
        np.testing.assert_array_equal(h5_record.joints_vis, json_record.joints_vis)
    assert from_h5[0].extra["head_size"] == pytest.approx(117.962, abs=1e-3)


def image_to_heatmap_tolerance(scale: np.ndarray, heatmap_width: int) -> float:
    """Half a heatmap pixel in image pixels: 0.5 x crop size / heatmap width."""
    return 0.5 * float(scale[0]) * 200.0 / heatmap_width


def test_encoded_heatmaps_decode_to_the_annotated_joints(mpii_data):
    dataset = build_dataset(sample_section(mpii_data), split="valid", train=False)
    assert len(dataset) == 5
    checked = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (3, 256, 256) and sample["target"].shape == (16, 64, 64)
        meta = sample["meta"]
        preds, maxvals = dataset.codec.decode_to_image(
            sample["target"][None], meta["center"][None], meta["scale"][None]
        )
        record = dataset.records[index]
        visible = record.joints_vis > 0
        assert np.all(sample["target_weight"][:, 0].numpy() == visible)
        np.testing.assert_allclose(maxvals[0, visible, 0], 1.0)
        error = np.abs(preds[0] - record.joints)[visible]
        assert error.max() <= image_to_heatmap_tolerance(meta["scale"], 64) + 1e-6
        checked += int(visible.sum())
    assert checked == 5 * 16 - 4  # every annotated joint of the five persons


# One grey level after normalisation by the smallest ImageNet std (about 0.0175).
ONE_GREY_LEVEL = 1.0 / 255.0 / 0.224


def test_forced_flip_mirrors_as_hrnet_and_swaps_left_and_right(mpii_data):
    plain = build_dataset(sample_section(mpii_data), split="valid", train=False)
    flipped = build_dataset(
        sample_section(mpii_data, scale_factor=0.0, rotation_prob=0.0), split="valid", train=True
    )
    flipped.force_flip = True  # no scale or rotation draw: the same box as the plain sample
    permutation = MPII.flip_permutation()
    for index in range(len(plain)):
        a, b = plain[index], flipped[index]
        assert b["meta"]["flipped"]
        np.testing.assert_allclose(b["meta"]["center"], a["meta"]["center"])  # meta keeps the unflipped box
        # HRNet mirrors the image (x -> W - 1 - x) and the centre with it, then crops: crop column u is
        # column 256 - u of the plain crop (the mirror about the crop centre), not column 255 - u.
        mirrored = a["image"].flip(-1)
        assert torch.allclose(b["image"][..., 1:], mirrored[..., :-1], atol=1.01 * ONE_GREY_LEVEL)
        assert torch.mean(torch.abs(b["image"] - mirrored)) > 2 * ONE_GREY_LEVEL  # the old crop: 1 px off
        record = plain.records[index]
        center, scale = b["meta"]["center"], b["meta"]["scale"]
        coords, _ = flipped.codec.decode(b["target"][None])
        input_points = coords[0].numpy() * flipped.codec.stride
        input_points[:, 0] = 256 - input_points[:, 0]  # undo the mirror about the crop centre
        image_points = affine_points(
            input_points, get_affine_transform(center, scale, 0.0, (256, 256), inverse=True)
        )
        # Channel j of the flipped target is the mirror image of joint permutation[j]: right <-> left.
        visible = record.joints_vis[permutation] > 0
        error = np.abs(image_points - record.joints[permutation])[visible]
        assert error.max() <= image_to_heatmap_tolerance(scale, 64) + 1e-6
        np.testing.assert_array_equal(b["target_weight"][:, 0].numpy(), record.joints_vis[permutation])
    flipped.force_flip = False
    assert not any(flipped[index]["meta"]["flipped"] for index in range(len(flipped)))


def test_training_samples_equal_hrnet_flip_then_warp(mpii_data):
    dataset = build_dataset(sample_section(mpii_data), split="valid", train=True)
    people = hrnet.mpii_db(mpii_data / "annot" / "sample.json", mpii_data / "images")
    options = {
        "image_size": (256, 256), "heatmap_size": (64, 64), "sigma": 2.0, "flip_pairs": hrnet.MPII_FLIP_PAIRS,
        "rgb": False, "scale_factor": 0.25, "rotation_factor": 30.0,
    }  # fmt: skip
    draws = set()
    for epoch, force_flip in ((0, None), (1, None), (2, None), (3, True), (3, False)):
        dataset.force_flip = force_flip
        for index, person in enumerate(people):
            rng = np.random.default_rng([dataset.seed, epoch, index])
            reference = hrnet.sample(person, rng, force_flip=force_flip, **options)
            sample = dataset[(index, epoch)]
            hrnet.assert_sample_equals(sample, reference)
            # meta keeps the unflipped centre; HRNet's meta holds the mirrored one
            width = read_image(person.image).shape[1]
            expected = (
                reference.center
                if not reference.flipped
                else [width - 1 - reference.center[0], reference.center[1]]
            )
            np.testing.assert_allclose(sample["meta"]["center"], expected, atol=1e-4)
            draws.add((reference.flipped, reference.rotation != 0, reference.scale[0] != person.scale[0]))
    assert {(True, True, True), (False, True, True), (True, False, True), (False, False, True)} <= draws


def test_validation_samples_equal_hrnet(mpii_data):
    dataset = build_dataset(sample_section(mpii_data), split="valid", train=False)
    people = hrnet.mpii_db(mpii_data / "annot" / "sample.json", mpii_data / "images")
    for index, person in enumerate(people):
        reference = hrnet.sample(
            person, None, image_size=(256, 256), heatmap_size=(64, 64), sigma=2.0,
            flip_pairs=hrnet.MPII_FLIP_PAIRS, rgb=False,
        )  # fmt: skip
        sample = dataset[index]
        hrnet.assert_sample_equals(sample, reference)
        np.testing.assert_allclose(sample["meta"]["center"], person.center, atol=1e-4)


def test_ground_truth_as_prediction_scores_100(mpii_data, tmp_path):
    dataset = build_dataset(sample_section(mpii_data), split="valid", train=False)
    preds = np.stack([record.joints for record in dataset.records])
    result = dataset.evaluate(preds, np.ones((5, 16, 1)), output_dir=tmp_path)
    assert result.metric == 100.0 and all(value == 100.0 for value in result.table.values())
    assert "Mean@0.1" in result.text and "100.000" in result.text
    np.testing.assert_allclose(load_pred_mat(tmp_path / "pred.mat"), preds + 1.0)


def test_h5_validation_against_the_official_ground_truth(mpii_data):
    content = scipy.io.loadmat(str(mpii_data / GT_FILE))
    official = np.transpose(content["pos_gt_src"], (2, 0, 1))
    with_mat = MPIIDataset(
        mpii_data, "valid", train=False, annotation_format="h5", gt_file=GT_FILE, codec=HeatmapCodec((256, 256), (64, 64), 2.0),
    )  # fmt: skip
    assert with_mat.evaluate(official - 1.0, np.ones((2958, 16, 1))).metric == 100.0
    # Without a gt .mat, the h5 'normalize' head sizes are used with the h5 joints.
    from_h5 = MPIIDataset(
        mpii_data, "valid", train=False, annotation_format="h5", codec=HeatmapCodec((256, 256), (64, 64), 2.0)
    )
    h5_joints = np.stack([record.joints for record in from_h5.records])
    result = from_h5.evaluate(h5_joints, np.ones((2958, 16, 1)))
    assert result.metric == 100.0 and "normalize" in result.text
    # The official predictions score within 0.1 of the official table with the h5 ground truth.
    predictions = np.transpose(content["pos_pred_src"], (2, 0, 1)) - 1.0
    assert from_h5.evaluate(predictions, None).metric == pytest.approx(
        with_mat.evaluate(predictions, None).metric, abs=0.1
    )


def test_subset_uses_the_matching_ground_truth_rows(mpii_data):
    dataset = MPIIDataset(
        mpii_data, "valid", train=False, annotation_format="h5", gt_file=GT_FILE, subset=7, codec=HeatmapCodec((64, 64), (16, 16), 2.0),
    )  # fmt: skip
    assert len(dataset) == 7
    gt, _ = dataset.ground_truth()
    assert len(gt) == 7
    shifted = np.stack([record.joints for record in dataset.records]) + 1000.0
    assert dataset.evaluate(shifted, None).metric == 0.0


def test_json_without_head_boxes_is_refused(mpii_data):
    dataset = build_dataset(sample_section(mpii_data, gt_file=None), split="valid", train=False)
    with pytest.raises(DataError, match="head sizes"):
        dataset.evaluate(np.zeros((5, 16, 2)), None)


def test_ground_truth_of_other_persons_is_refused(mpii_data, tmp_path):
    gt, _ = build_dataset(sample_section(mpii_data), split="valid", train=False).ground_truth()
    save_gt_mat(
        tmp_path / "other.mat", gt.joints[::-1], gt.annotated[::-1], np.zeros((5, 2, 2)) + [[0], [50]]
    )
    dataset = build_dataset(sample_section(mpii_data, gt_file=str(tmp_path / "other.mat")), "valid", False)
    with pytest.raises(DataError, match="does not match"):
        dataset.evaluate(np.zeros((5, 16, 2)), None)


def test_missing_files_name_the_path_and_the_layout(tmp_path, mpii_data):
    with pytest.raises(DataError, match=r"train\.json.*annot/"):
        load_mpii_records(tmp_path, "train")
    (tmp_path / "annot").mkdir()
    shutil.copy(mpii_data / "annot" / "sample.json", tmp_path / "annot" / "valid.json")
    with pytest.raises(DataError, match=rf"{tmp_path / 'images'}.*images/\*\.jpg"):
        load_mpii_records(tmp_path, "valid")
    with pytest.raises(DataError, match=r"valid\.h5"):
        load_mpii_records(tmp_path, "valid", annotation_format="h5")


def test_corrupt_jpeg_names_the_file(tmp_path, mpii_data):
    (tmp_path / "annot").mkdir()
    (tmp_path / "images").mkdir()
    shutil.copy(mpii_data / "annot" / "sample.json", tmp_path / "annot" / "valid.json")
    first = json.loads((mpii_data / "annot" / "sample.json").read_text())[0]["image"]
    good = (mpii_data / "images" / first).read_bytes()
    (tmp_path / "images" / first).write_bytes(good[: len(good) // 50])  # a truncated download
    dataset = MPIIDataset(tmp_path, "valid", train=False, codec=HeatmapCodec((64, 64), (16, 16), 2.0))
    with pytest.raises(DataError, match=first):
        dataset[0]
    (tmp_path / "images" / first).write_bytes(b"")
    with pytest.raises(DataError, match=first):
        dataset[0]


def test_config_errors(mpii_data):
    with pytest.raises(ConfigError, match="annotation_fromat.*annotation_format"):
        build_dataset(sample_section(mpii_data, annotation_fromat="h5"), "valid", False)
    with pytest.raises(ConfigError, match="input_size"):
        build_dataset(sample_section(mpii_data, input_size=[256]), "valid", False)
    with pytest.raises(ConfigError, match="color"):
        build_dataset(sample_section(mpii_data, color="hsv"), "valid", False)
    with pytest.raises(ConfigError, match="subset"):
        build_dataset(sample_section(mpii_data, subset=0), "valid", False)
    with pytest.raises(ConfigError, match="annotation_format"):
        build_dataset(sample_section(mpii_data, annotation_format="xml"), "valid", False)
    with pytest.raises(ConfigError, match="split"):
        build_dataset(sample_section(mpii_data, split="train"), "valid", False)
    assert "mpii" in DATASETS.names()


def copied_root(tmp_path, mpii_data, entries=None, name="valid.json"):
    """A dataset root in tmp_path with (changed) sample annotations and an empty images folder."""
    (tmp_path / "annot").mkdir(exist_ok=True)
    (tmp_path / "images").mkdir(exist_ok=True)
    if entries is None:
        entries = json.loads((mpii_data / "annot" / "sample.json").read_text())
    path = tmp_path / "annot" / name
    path.write_text(json.dumps(entries))
    return path


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("scale", float("nan"), "has scale nan"),
        ("scale", 0.0, "has scale 0.0"),
        ("scale", -1.5, "has scale -1.5"),
        ("center", [float("nan"), 300.0], r"has centre \[nan, 300.0\]"),
        ("center", [float("inf"), 300.0], r"has centre \[inf, 300.0\]"),
        ("center", [10.0, 20.0, 30.0], r"has centre \[10.0, 20.0, 30.0\]"),
    ],
)
def test_degenerate_json_box_names_the_file_and_person(
    tmp_path, mpii_data, sample_entries, field, value, expected
):
    entries = [dict(entry) for entry in sample_entries]
    entries[2][field] = value
    path = copied_root(tmp_path, mpii_data, entries)
    before = path.read_bytes()
    with pytest.raises(DataError, match=rf"{path}: person 2 \(image {entries[2]['image']}\) {expected}"):
        load_mpii_records(tmp_path, "valid")
    assert path.read_bytes() == before


def test_nan_annotated_joint_names_the_joint(tmp_path, mpii_data, sample_entries):
    entries = [dict(entry) for entry in sample_entries]
    entries[1]["joints"] = [list(joint) for joint in entries[1]["joints"]]
    entries[1]["joints"][11][0] = float("nan")
    copied_root(tmp_path, mpii_data, entries)
    with pytest.raises(DataError, match=r"person 1 .* NaN or infinite r_elbow joint"):
        load_mpii_records(tmp_path, "valid")


@pytest.mark.parametrize("split", ["valid", "train"])
def test_empty_split_is_named(tmp_path, mpii_data, split):
    path = copied_root(tmp_path, mpii_data, [], name=f"{split}.json")
    with pytest.raises(DataError, match=rf"{path} holds no persons: the {split} split is empty"):
        load_mpii_records(tmp_path, split)
    with pytest.raises(DataError, match="split is empty"):
        MPIIDataset(tmp_path, split, train=split == "train", codec=HeatmapCodec((64, 64), (16, 16), 2.0))


def test_json_that_is_not_a_list(tmp_path, mpii_data):
    path = copied_root(tmp_path, mpii_data, {"persons": []})
    with pytest.raises(DataError, match=rf"{path}: expected a JSON list of persons"):
        load_mpii_records(tmp_path, "valid")


def write_h5(path, source, rows, **changes):
    """The first ``rows`` persons of the real valid.h5, with some datasets replaced."""
    import h5py

    with h5py.File(source, "r") as h5:
        data = {key: h5[key][:rows] for key in ("center", "scale", "part", "imgname", "normalize")}
    data.update(changes)
    with h5py.File(path, "w") as h5:
        for key, value in data.items():
            h5[key] = value
    return data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("scale", "has scale 0.0"),
        ("center", r"has centre \[nan, "),
        ("part", "has a NaN or infinite l_wrist joint"),
    ],
)
def test_degenerate_h5_person_is_named(tmp_path, mpii_data, change, expected):
    (tmp_path / "annot").mkdir()
    (tmp_path / "images").mkdir()
    path = tmp_path / "annot" / "valid.h5"
    data = write_h5(path, mpii_data / "annot" / "valid.h5", 6)
    value = data[change].astype(np.float64)
    if change == "scale":
        value[4] = 0.0
    elif change == "center":
        value[4, 0] = np.nan
    else:
        value[4, 15, 1] = np.nan
    write_h5(path, mpii_data / "annot" / "valid.h5", 6, **{change: value})
    before = path.read_bytes()
    image = data["imgname"][4].decode()
    with pytest.raises(DataError, match=rf"{path}: person 4 \(image {image}\) {expected}"):
        load_mpii_records(tmp_path, "valid", annotation_format="h5")
    assert path.read_bytes() == before


def test_h5_of_disagreeing_lengths_and_empty_h5(tmp_path, mpii_data):
    (tmp_path / "annot").mkdir()
    (tmp_path / "images").mkdir()
    path = tmp_path / "annot" / "valid.h5"
    data = write_h5(path, mpii_data / "annot" / "valid.h5", 6)
    write_h5(path, mpii_data / "annot" / "valid.h5", 6, scale=data["scale"][:5])
    with pytest.raises(DataError, match=r"h5 datasets disagree: center \(6, 2\), scale \(5,\)"):
        load_mpii_records(tmp_path, "valid", annotation_format="h5")
    write_h5(path, mpii_data / "annot" / "valid.h5", 0)
    with pytest.raises(DataError, match="the valid split is empty"):
        load_mpii_records(tmp_path, "valid", annotation_format="h5")


def test_bad_head_size_in_the_h5_names_it(tmp_path, mpii_data):
    (tmp_path / "annot").mkdir()
    (tmp_path / "images").mkdir()
    path = tmp_path / "annot" / "valid.h5"
    data = write_h5(path, mpii_data / "annot" / "valid.h5", 6)
    normalize = data["normalize"].astype(np.float64)
    normalize[2] = 0.0
    write_h5(path, mpii_data / "annot" / "valid.h5", 6, normalize=normalize)
    dataset = MPIIDataset(
        tmp_path, "valid", train=False, annotation_format="h5", codec=HeatmapCodec((64, 64), (16, 16), 2.0)
    )
    with pytest.raises(DataError, match=rf"{path} \(normalize\): 1 of 6 persons have a head size .*person 2"):
        dataset.evaluate(np.zeros((6, 16, 2)), None)
