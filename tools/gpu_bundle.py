"""Build dist/gpu-bundle/: everything a GPU node without network needs to run nlbench beside its image's torch.

    make gpu-bundle             # = .venv/bin/python tools/gpu_bundle.py --out dist/gpu-bundle

The bundle holds nlbench's source (src/: the tracked files of nlbench/ and experiments/), the wheels of nlbench's
runtime dependencies that a stock CUDA PyTorch image lacks (wheels/), and run.sh (tools/gpu_bundle_run.sh), which
installs them with ``pip install --no-index --target`` and runs the device check. Which packages the image has is
tools/gpu-image.txt; the bundled ones are nlbench's dependency tree (pyproject.toml, followed through this venv's
installed metadata as tools/constraints.py does) minus the image's own tree and minus what only the W&B
integration needs (wandb: 62 MB installed; requests). Versions are constraints.txt's pins; every wheel must be pure
Python (``py3-none-any``: it installs on whatever Python the image has). The bundle must stay under 64 MiB (the
device machine's upload limit).
"""

from __future__ import annotations

import argparse
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from constraints import pinned_tree  # noqa: E402 - tools/ is not a package

ROOT = Path(__file__).resolve().parents[1]
IMAGE_FILE = ROOT / "tools" / "gpu-image.txt"
RUN_SH = ROOT / "tools" / "gpu_bundle_run.sh"
# Only nlbench's W&B integration (logging, exporting sweeps, reading runs back) imports these: left to the user.
WANDB_ONLY = ("wandb", "requests")
SOURCE = ("nlbench", "experiments")
LIMIT = 64 * 2**20


class BundleError(RuntimeError):
    """The bundle cannot be built as specified; one line."""


def image_requirements(path: Path = IMAGE_FILE) -> list[Requirement]:
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    return [Requirement(ln) for ln in lines if ln]


def constraint_pins(path: Path = ROOT / "constraints.txt") -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """pyproject.toml's runtime dependencies (not the dev extras), without the W&B-only ones."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return [r for r in requirements if canonicalize_name(r.name) not in WANDB_ONLY]


def bundled_packages() -> dict[str, str]:
    """name -> version of the wheels the bundle carries (see the module docstring)."""
    tree = pinned_tree(runtime_requirements())
    image = pinned_tree([r for r in image_requirements() if _installed(r.name)])  # what the image's tree shares
    wanted = sorted(set(tree) - set(image) - {canonicalize_name(n) for n in WANDB_ONLY})
    pins = constraint_pins()
    missing = [name for name in wanted if name not in pins]
    if missing:
        raise BundleError(f"constraints.txt pins no version of {', '.join(missing)} (run make constraints)")
    return {name: pins[name] for name in wanted}


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False  # e.g. statsmodels: in the image, not in nlbench's tree; nothing of it is bundled either
    return True


def download(packages: dict[str, str], dest: Path) -> list[Path]:
    """``pip download --no-deps`` of each pinned package as a wheel; each must be pure Python."""
    dest.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}=={version}" for name, version in packages.items()]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            str(dest),
            *specs,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise BundleError(f"pip download failed: {tail[-1] if tail else done.returncode}")
    wheels = sorted(dest.glob("*.whl"))
    impure = [w.name for w in wheels if not w.name.endswith("-none-any.whl")]
    if impure:
        raise BundleError(f"not pure Python (would not install on every image's Python): {', '.join(impure)}")
    return wheels


def source_files() -> list[Path]:
    """The tracked files of nlbench/ and experiments/ (a git checkout), else every file there but caches."""
    done = subprocess.run(["git", "ls-files", "-z", *SOURCE], cwd=ROOT, capture_output=True)
    if done.returncode == 0 and done.stdout:
        return [Path(p) for p in done.stdout.decode().split("\0") if p]
    return [
        p.relative_to(ROOT)
        for folder in SOURCE
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]


def build(out: Path) -> dict[str, object]:
    if out.exists():
        shutil.rmtree(out)
    packages = bundled_packages()
    wheels = download(packages, out / "wheels")
    for rel in source_files():
        target = out / "src" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    run = out / "run.sh"
    shutil.copy2(RUN_SH, run)
    run.chmod(run.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    image = ", ".join(str(r) for r in image_requirements())
    (out / "README.txt").write_text(
        'nlbench for a GPU node without network (built by `make gpu-bundle`; see README.md, "Offline and air-gapped '
        'nodes").\n\n    bash run.sh OUT_DIR [--smoke]\n\n'
        f"Expects the image's own {image}.\nBundled wheels: {', '.join(w.name for w in wheels)}.\n"
    )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if size >= LIMIT:
        raise BundleError(f"the bundle is {size / 2**20:.1f} MiB, over the {LIMIT // 2**20} MiB limit")
    return {"packages": packages, "wheels": [w.name for w in wheels], "size_mib": size / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu_bundle.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "gpu-bundle")
    args = parser.parse_args(argv)
    try:
        info = build(args.out)
    except BundleError as err:
        print(f"gpu-bundle: error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out} ({info['size_mib']:.1f} MiB): {', '.join(info['wheels'])}; run: bash {args.out}/run.sh "
        "OUT_DIR [--smoke]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
