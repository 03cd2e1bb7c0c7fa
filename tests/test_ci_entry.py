"""`.ci/run` is a valid bash script that ends with the README's test command (`make test`), run after set -e, after
`make test-oldest` (nlbench on the GPU image's versions).

A helper's edit once spliced the SLURM install into the script's header comment, so `make test` ended up inside an
unclosed backtick and the package installs ran before `set -euo pipefail`; `bash -n` alone does not catch that."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    script = REPO / ".ci" / "run"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    commands = [
        line.strip() for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[0] == "set -euo pipefail"  # before anything that could fail
    assert commands[-2:] == ["make test-oldest", "make test"]
    assert all("`" not in line for line in commands)
    setup = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text().split("## Set-up")[1], re.S)
    assert setup and re.search(r"^make test\b", setup.group(1), re.M)
