"""The one check of every command's output paths: never an input, never an earlier result unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils import output_paths
from utils.output_paths import OutputPathError, prepare_outputs


def one_line(caught: pytest.ExceptionInfo) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_outputs_get_their_folders(tmp_path: Path) -> None:
    prepare_outputs([tmp_path / "a" / "b" / "x.png", tmp_path / "a" / "y.json"], "--out")
    assert (tmp_path / "a" / "b").is_dir()


def test_an_input_is_never_replaced_not_even_with_overwrite(tmp_path: Path) -> None:
    image = tmp_path / "p.png"
    image.write_bytes(b"input")
    for overwrite in (False, True):
        with pytest.raises(OutputPathError) as caught:
            prepare_outputs([tmp_path / "." / "p.png"], "--out", inputs=[image], overwrite=overwrite)
        assert f"would replace the input file {image}" in one_line(caught)
    assert image.read_bytes() == b"input"


def test_an_earlier_result_needs_overwrite(tmp_path: Path) -> None:
    old = [tmp_path / "p.jpg.png", tmp_path / "p.jpg.json"]
    for path in old:
        path.write_text("earlier")
    with pytest.raises(OutputPathError) as caught:
        prepare_outputs(old, "--out")
    assert f"{old[0]} and 1 more already exist" in one_line(caught) and "--overwrite" in str(caught.value)
    prepare_outputs(old, "--out", overwrite=True)  # asked: accepted (the command then replaces them)


def test_two_outputs_of_one_name_collide(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="two outputs would be written to the same file"):
        prepare_outputs([tmp_path / "p.png", tmp_path / "sub" / ".." / "p.png"], "--out")


@pytest.mark.parametrize("under", ["", "sub/deeper"])
def test_a_folder_that_is_a_file(tmp_path: Path, under: str) -> None:
    a_file = tmp_path / "results"
    a_file.write_text("keep")
    folder = a_file / under if under else a_file
    with pytest.raises(OutputPathError) as caught:
        prepare_outputs([folder / "x.onnx"], "--onnx")
    reason = f"lies under {a_file}, which is a file" if under else "is a file"
    assert one_line(caught).startswith(f"cannot create the output folder {folder}: it {reason}, not a folder")
    assert a_file.read_text() == "keep"


def test_a_read_only_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # root may write anywhere but on a read-only filesystem; os.access answers that case too: simulate it
    monkeypatch.setattr(output_paths, "writable", lambda folder: False)
    with pytest.raises(OutputPathError) as caught:
        prepare_outputs([tmp_path / "new" / "x.png"], "--out")
    assert f"{tmp_path}, where the output folder {tmp_path / 'new'} goes, is not writable" in one_line(caught)
    assert not (tmp_path / "new").exists()
