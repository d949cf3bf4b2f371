"""The repository's own places, in one spot: its root, the experiments folder, the shared sample data beside it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()  # the real sample images and annotations
