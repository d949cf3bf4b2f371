"""Shared test fixtures: the real sample data in ../shared/data and small helpers."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def _require_shared(subdir: str) -> Path:
    """Return ../shared/data/<subdir>; skip when absent, but fail when CI=true."""
    path = SHARED_DATA / subdir
    if path.is_dir():
        return path
    reason = f"real sample data not found at {path} (expected the shared data folder beside the repo)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_package(name: str) -> ModuleType:
    """Import an optional package (onnxruntime); skip the calling module when it is absent, but fail when
    CI=true, where the project's requirements install it and its absence is a broken set-up."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        reason = (
            f"the optional package {name} is not installed ({error}); pip install -r requirements-dev.txt"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real sample data (MPII, COCO, OCHuman)."""
    return _require_shared("")


@pytest.fixture(scope="session")
def mpii_data() -> Path:
    return _require_shared("mpii")


@pytest.fixture(scope="session")
def coco_data() -> Path:
    return _require_shared("coco")


@pytest.fixture(scope="session")
def ochuman_data() -> Path:
    return _require_shared("ochuman")


@pytest.fixture(scope="session")
def short_mpii_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The short MPII training run of tests/short_runs.py (about 15 s on one core), trained once per session:
    tests/test_learning.py checks what it learned, tests/test_export.py quantizes its deploy.pth."""
    from tests.short_runs import train_short_mpii  # trains with the engine: imported only when asked for

    return train_short_mpii(tmp_path_factory.mktemp("mpii_learning"))


def _test_threads() -> int:
    """Torch threads per test process: OMP_NUM_THREADS when set; else the cores shared among pytest-xdist's
    workers (``-n auto``: one each on a 2-core machine), at most 2."""
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker, child processes (torchrun, the scripts run by subprocess) get the worker's
    thread count too: two workers each starting two-thread children on 2 cores stall one another."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", str(_test_threads()))


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep CPU tests predictable on small CI machines."""
    torch.set_num_threads(_test_threads())
    yield
