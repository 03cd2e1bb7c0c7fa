"""The block benchmark's table, skipping rules and CPU memory measurement (tiny sizes; timings are not checked)."""

from __future__ import annotations

import pytest
import torch

from nlbench.bench import block as bench


def table_rows(output: str) -> dict[tuple[str, str], list[str]]:
    """(size, variant) -> the cells after the SDPA kernel's (time, peak memory, speedups)."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and "x" in cells[0] and cells[0] != "size":
            rows[(cells[0], cells[2])] = cells[4:]
    return rows


def test_table_has_every_variant_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--device", "cpu", "--sizes", "[4, 32]", "--batch", "1", "--reps", "1", "--warmup", "0"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {(f"{s}x{s}", v.name) for s in (4, 32) for v in bench.VARIANTS}
    for (size, _), cells in rows.items():
        assert float(cells[0]) > 0 and float(cells[1]) >= 0
        if size == "32x32":
            assert float(cells[1]) > 0
    assert rows[("32x32", "softmax (SDPA)")][2] == "1.0x"
    # The explicit 1024 x 1024 maps (4 MiB each) dominate the N x N order; re-association avoids them.
    assert float(rows[("32x32", "scale nxn")][1]) > 8
    assert float(rows[("32x32", "scale re-associated")][1]) < 4


def test_quadratic_variants_are_skipped_by_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--device", "cpu", "--sizes", "[8]", "--batch", "1", "--reps", "1", "--warmup", "0"]
    bench.main([*tiny, "--max_gib", "1e-6"])
    rows = table_rows(capsys.readouterr().out)
    assert rows[("8x8", "scale nxn")][0].startswith("skipped (estimated")
    assert rows[("8x8", "softmax (unfused)")][0].startswith("skipped (estimated")
    assert not rows[("8x8", "softmax (SDPA)")][0].startswith("skipped")  # fused: no map is materialised
    bench.main([*tiny, "--max_gflop", "0"])
    rows = table_rows(capsys.readouterr().out)
    assert rows[("8x8", "softmax (SDPA)")][0].endswith("GFLOP)")
    assert float(rows[("8x8", "scale re-associated")][0]) > 0


def test_cpu_peak_memory_sees_temporary_tensors() -> None:
    def step() -> None:
        big = torch.ones(1024, 1024)  # 4 MiB, freed before the step returns
        del big
        torch.ones(256, 1024).sum()  # 1 MiB

    assert bench.peak_bytes(step, torch.device("cpu")) == pytest.approx(4 * 2**20, rel=0.01)


@pytest.mark.parametrize(("option", "value"), [("--dtype", "int8"), ("--clock", "sundial")])
def test_bad_choices_are_rejected(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=option):
        bench.main(["--device", "cpu", option, value])


def test_variants_come_from_the_registries_and_take_user_methods(capsys: pytest.CaptureFixture[str]) -> None:
    names = [v.name for v in bench.VARIANTS]
    assert {"linear", "efficient", "gc block", "se block"} <= set(names)
    argv = [
        "--device",
        "cpu",
        "--sizes",
        "[4]",
        "--batch",
        "1",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--methods",
        "[linear, tests.test_nn_methods.SigmoidAttention]",
        "--blocks",
        "[se]",
    ]
    assert bench.main(argv) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {("4x4", "linear"), ("4x4", "sigmoid"), ("4x4", "se block")}
    assert all(float(cells[0]) > 0 for cells in rows.values())


@pytest.mark.parametrize(("option", "value"), [("--methods", "[sigmoid]"), ("--blocks", "[cbam]")])
def test_unknown_methods_are_refused_naming_the_option(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{option}: unknown"):
        bench.main(["--device", "cpu", option, value])


def test_each_row_names_the_sdpa_kernel_it_ran(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(
        [
            "--device",
            "cpu",
            "--sizes",
            "[8]",
            "--batch",
            "1",
            "--reps",
            "1",
            "--warmup",
            "0",
            "--methods",
            "[softmax, scale]",
            "--blocks",
            "[gc]",
        ]
    )
    kernels = {
        cells[2]: cells[3]
        for line in capsys.readouterr().out.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] == "8x8"
    }
    assert kernels == {
        "softmax (SDPA)": "flash (cpu)",
        "softmax (unfused)": "math",
        "scale nxn": "–",
        "scale re-associated": "–",
        "gc block": "–",
    }
