"""`make gpu-bundle` (tools/gpu_bundle.py): nlbench's source, the pure-Python wheels a CUDA PyTorch image lacks, and
run.sh, under 64 MiB; the lowest tested versions pyproject declares are the image's. `make test-oldest` (CI) runs the
bundle's run.sh --smoke in a venv of only the image's packages with no index; the slow test here does the same in
this venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import gpu_bundle  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bundle") / "gpu-bundle"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gpu_bundle.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode and "pip download failed" in done.stderr:
        pytest.skip(f"optional: needs the package registry ({done.stderr.strip()})")
    assert done.returncode == 0, done.stderr
    return {"out": out, "stdout": done.stdout}


def test_the_bundle_holds_what_the_image_lacks_and_nothing_of_wandb(bundle: dict[str, Any]) -> None:
    out = bundle["out"]
    wheels = sorted(p.name.split("-")[0] for p in (out / "wheels").iterdir())
    assert wheels == ["cloudpickle", "docstring_parser", "jsonargparse", "submitit", "typeshed_client"]
    assert all(p.name.endswith("-py3-none-any.whl") for p in (out / "wheels").iterdir())
    pins = gpu_bundle.constraint_pins()
    assert {p.name.split("-")[1] for p in (out / "wheels").iterdir()} == {
        pins[canonicalize_name(name)] for name in wheels
    }  # constraints.txt's versions
    assert (out / "src" / "nlbench" / "bench" / "device_check.py").is_file()
    assert (out / "src" / "nlbench" / "data" / "sample" / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert (out / "src" / "experiments" / "gpu.yaml").is_file() and not list(out.rglob("__pycache__"))
    assert os.access(out / "run.sh", os.X_OK) and subprocess.run(["bash", "-n", str(out / "run.sh")]).returncode == 0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 64 * 2**20  # the device machine's upload limit
    assert "wrote" in bundle["stdout"] and "MiB" in bundle["stdout"]


def test_run_sh_refuses_bad_use_in_one_line(bundle: dict[str, Any], tmp_path: Path) -> None:
    run = str(bundle["out"] / "run.sh")
    for args, env, message in (
        ([], {}, "usage: bash run.sh OUT_DIR [--smoke]"),
        ([str(tmp_path / "o"), "--fast"], {}, "unknown option --fast"),
        ([str(tmp_path / "o")], {"PYTHON": "/bin/false"}, "cannot import torch"),
    ):
        done = subprocess.run(["bash", run, *args], env={**os.environ, **env}, capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_pyproject_declares_the_images_versions_as_the_lowest() -> None:
    """One owner: tools/gpu-image.txt pins the image; pyproject's lower bounds are those pins (what test-oldest
    tests)."""
    declared = {
        canonicalize_name(Requirement(line).name): Requirement(line).specifier
        for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    pinned = [r for r in gpu_bundle.image_requirements() if str(r.specifier).startswith("==")]
    assert {r.name for r in pinned} == {"torch", "torchvision", "lightning", "torchmetrics"}
    for requirement in pinned:
        version = str(requirement.specifier).removeprefix("==")
        specifier = declared[canonicalize_name(requirement.name)]
        lower = [s.version for s in specifier if s.operator == ">="]
        assert lower in ([version], [version.removesuffix(".0")]), (requirement, specifier)
        # Besides the lowest, only an upper bound (the range tested, e.g. lightning<2.7).
        assert all(s.operator in (">=", "<") for s in specifier), (requirement, specifier)


@pytest.mark.slow
def test_run_sh_smoke_passes_with_no_index(bundle: dict[str, Any], tmp_path: Path) -> None:
    """The issue's acceptance, in this venv (make test-oldest runs it in the image-like one)."""
    env = {**os.environ, "PIP_NO_INDEX": "1", "PYTHON": sys.executable, "PYTHONPATH": ""}
    done = subprocess.run(
        ["bash", str(bundle["out"] / "run.sh"), str(tmp_path / "out"), "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "device-check.json").read_text())
    assert {phase["status"] for phase in results["phases"].values()} == {"done"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["device-check.json", "device-check.md", "logs"]
