"""The image holds every package agentml installs: a package added to pyproject but not to the Dockerfile would
build an image whose `agentml` command cannot import its own code."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_installed_package_is_copied_into_the_image() -> None:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    copied = set(re.findall(r"^COPY (\w+) /tmp/agentml-src/\1$", dockerfile, flags=re.M))
    kept = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    assert packages == copied, f"COPY lines {sorted(copied)} differ from the installed packages {sorted(packages)}"
    assert packages <= kept, f"{sorted(packages - kept)} are excluded from the build context"
    assert {"service", "planner", "executor", "skills", "governance"} <= packages
