"""constraints.txt: the exact versions that printed the README's demo numbers are the ones installed and named."""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
README_VERSIONS = ("torch", "torchvision", "opencv-python-headless", "numpy")  # the ones the README names


def pins() -> dict[str, str]:
    """{canonical package name: version} of constraints.txt (every line that is not a comment is a pin)."""
    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = PIN.match(line)
            assert match, f"constraints.txt: '{line}' is not an exact pin name==version"
            pinned[canonicalize_name(match[1])] = match[2]
    return pinned


def requirements(path: Path) -> set[str]:
    """The canonical names of the packages a requirements file asks for, following its ``-r`` includes."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= requirements(path.parent / line[2:].strip())
        elif line:
            names.add(canonicalize_name(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


def test_every_requirement_is_pinned() -> None:
    missing = requirements(REPO / "requirements-dev.txt") - set(pins())
    assert not missing, f"constraints.txt pins no version of {', '.join(sorted(missing))}"


def test_the_installed_packages_are_the_pinned_set() -> None:
    required = requirements(REPO / "requirements-dev.txt")
    differences = []
    for name, pinned in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in required:  # others (nvidia-*, triton) come only with torch's CUDA build
                differences.append(f"{name} is not installed (pinned {pinned})")
            continue
        if Version(installed).public != Version(pinned).public:  # 2.14.1+cpu is torch 2.14.1
            differences.append(f"{name} {installed} (pinned {pinned})")
    if differences:
        message = (
            f"the installed packages differ from constraints.txt: {'; '.join(differences)}. The README's demo "
            "numbers hold for the pinned set only; install it with pip install -r requirements-dev.txt -c "
            "constraints.txt"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_the_readme_names_the_pinned_versions() -> None:
    readme, pinned = (REPO / "README.md").read_text(), pins()
    for name in README_VERSIONS:
        assert f"{name} {pinned[name]}" in readme, f"README.md does not name {name} {pinned[name]}"
    assert readme.count("-c constraints.txt") >= 2  # the setup command and the test command
