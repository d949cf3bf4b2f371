"""benchmarks/jpeg_decoders.py: identity counts on the real sample JPEGs, and a row for an absent package."""

from __future__ import annotations

from pathlib import Path

import benchmarks.jpeg_decoders as bench
from engine.cli import run_cli


def test_identity_and_a_missing_decoder_row(shared_data: Path, monkeypatch, capsys) -> None:
    def absent():
        raise ImportError("No module named 'simplejpeg'")

    decoders = dict(bench.DECODERS)
    name = next(n for n in decoders if n.startswith("simplejpeg"))
    decoders[name] = ("simplejpeg", absent)
    monkeypatch.setattr(bench, "DECODERS", decoders)
    assert run_cli(bench.main, ["--data", str(shared_data / "mpii"), "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("5 JPEGs under") and "| OpenCV cv2.imdecode | 5 of 5 |" in out
    assert f"| {name} | - | - | not installed (simplejpeg: No module named 'simplejpeg') |" in out


def test_a_folder_without_jpegs_is_one_paragraph(tmp_path: Path, capsys) -> None:
    assert run_cli(bench.main, ["--data", str(tmp_path)]) == 2
    assert "no JPEG files there" in capsys.readouterr().err
