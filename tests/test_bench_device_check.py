"""The device check (`nlbench bench device-check`): its smoke run end to end on the CPU, writing only under OUT;
phases stopped at their deadline; the derived figures (speed-ups, the precision verdict, both projections)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from fakecuda import FakeCuda

from nlbench.bench import device_check, device_phases
from nlbench.bench.block import VARIANTS
from nlbench.bench.device_check import PHASES, Phase, precision_summary, projection, run_phase
from nlbench.bench.device_phases import FULL, SMOKE, Rows
from nlbench.classifier import ImageClassifier
from nlbench.data import SAMPLE_ROOT, CIFAR10DataModule
from nlbench.data.synthetic import write_cifar10
from nlbench.device_share import MEMORY_FRACTION_ENV

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run in a fresh process whose working directory, HOME and TMPDIR are empty folders."""
    root = tmp_path_factory.mktemp("device-check")
    places = {name: root / name for name in ("cwd", "home", "tmp")}
    for place in places.values():
        place.mkdir()
    sample_before = sorted(p.name for p in SAMPLE_ROOT.rglob("*"))
    env = {**os.environ, "HOME": str(places["home"]), "TMPDIR": str(places["tmp"]), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "nlbench", "bench", "device-check", "--smoke", "--out", str(root / "out")],
        cwd=places["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return {"done": done, "out": root / "out", "places": places, "sample_before": sample_before}


def test_the_smoke_run_passes_every_phase(smoke: dict[str, Any]) -> None:
    done, out = smoke["done"], smoke["out"]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((out / "device-check.json").read_text())
    assert results["smoke"] and results["device"] == "cpu"
    assert {name: phase["status"] for name, phase in results["phases"].items()} == {p.name: "done" for p in PHASES}
    rows = {name: phase["rows"] for name, phase in results["phases"].items()}
    assert not [(name, r) for name, rs in rows.items() for r in rs if "error" in r]
    kernels = {(r["dtype"], r["reduction"]): r for r in rows["kernels"]}
    assert set(kernels) == {(d, r) for d in ("float32", "bfloat16") for r in (1, 2, 4, 8, 16)}
    assert {r["kernel"] for r in rows["kernels"]} == {"flash (cpu)"}  # the CPU's one fused kernel
    assert results["phases"]["kernels"]["info"]["versions"]["torch"] == torch.__version__
    assert [(r["setup"], r["settings"]["precision"]) for r in rows["epoch"]] == [
        ("fast", "32-true"),
        ("paper", "32-true"),
    ]
    assert all(r["epoch_s"] > 0 and r["train_images"] == SMOKE.train_images for r in rows["epoch"])
    assert [(r["k"], r["mps"]) for r in rows["packed"]] == [(1, False), (2, False), (2, True)]
    assert all(r["images_per_s"] > 0 for r in rows["packed"][:2]) and rows["packed"][0]["speedup"] == 1.0
    assert rows["packed"][2]["skipped"] == "MPS is a CUDA feature"
    assert [(r["precision"], r["seed"]) for r in rows["precision"]] == [
        ("32-true", 0),
        ("bf16-mixed", 0),
        ("32-true", 1),
        ("bf16-mixed", 1),
    ]
    assert all(0 <= r["val_acc1"] <= 1 and r["tf32"] == {"matmul": False, "cudnn": False} for r in rows["precision"])
    assert results["precision"]["val_acc1"]["verdict"] in ("within the fp32 noise floor", "beyond the fp32 noise floor")
    assert [r["setting"] for r in rows["compile"]] == [
        "fast path, compile default / reduce-overhead",
        "paper set-up, deterministic: false",
        "paper set-up, deterministic: true",
    ]
    assert rows["compile"][0]["skipped"].startswith("smoke run") and results["determinism_cost"] is not None
    assert {r["variant"] for r in rows["block"]} == {v.name for v in VARIANTS}
    assert {r["sdpa"] for r in rows["block"] if r["variant"] == "softmax (SDPA)"} == {"flash (cpu)"}
    assert results["projections"]["paper"]["hours"] > 0 and results["projections"]["fast"]["best_k"] in (1, 2)


def test_the_smoke_run_writes_only_under_out(smoke: dict[str, Any]) -> None:
    out = smoke["out"]
    assert sorted(p.name for p in out.iterdir()) == ["device-check.json", "device-check.md", "logs"]  # .work gone
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(f"{p.name}.log" for p in PHASES)
    for name, place in smoke["places"].items():  # cwd, HOME and TMPDIR stay empty
        assert not list(place.rglob("*")), name
    assert sorted(p.name for p in SAMPLE_ROOT.rglob("*")) == smoke["sample_before"]  # its cache went under OUT


def test_the_report_has_every_section_and_both_labelled_projections(smoke: dict[str, Any]) -> None:
    table = (smoke["out"] / "device-check.md").read_text()
    for heading in (
        "| check | figure, or why there is none |",
        *(f"## {p.title}" for p in PHASES),
        "## Projected CIFAR-10 grid",
    ):
        assert heading in table
    for label in device_check.PROJECTION_LABELS.values():
        assert f"- {label}: **" in table
    assert "| fast path, compile default / reduce-overhead | smoke run" in table
    assert "not counted (sync-debug mode is CUDA only" in table
    # the phases' own sections were printed as each ended
    assert smoke["done"].stdout.count("## ") >= len(PHASES)


def test_a_phase_past_its_deadline_is_stopped_with_its_children(tmp_path: Path) -> None:
    (tmp_path / device_check.LOGS).mkdir()
    start = time.monotonic()
    result = run_phase(Phase("packed", "(b) packed runs", 1, 1), tmp_path, smoke=True, device="cpu", seconds=2)
    assert time.monotonic() - start < 2 + device_check.GRACE_S + 5
    assert result["status"] == "deadline" and result["why"].startswith("stopped at its deadline (2 s)")
    assert not subprocess.run(["pgrep", "-f", f"device_phases packed --out {tmp_path}"], capture_output=True).stdout


def test_a_spent_budget_leaves_phases_unrun_and_says_why(tmp_path: Path) -> None:
    results = device_check.run_check(tmp_path / "out", smoke=True, device="cpu", budget_s=0.5)
    assert {p["status"] for p in results["phases"].values()} == {"not run"}
    assert "s left of the 0 s budget" in results["phases"]["epoch"]["why"]
    assert device_check.exit_code(results) == 1  # a smoke run passes only when every phase ran
    assert "not run" in (tmp_path / "out" / "device-check.md").read_text()


def test_rows_are_written_one_at_a_time(tmp_path: Path) -> None:
    rows = Rows(tmp_path / "phase.json", deadline=time.time() + 60)
    rows.add({"k": 1})
    assert json.loads((tmp_path / "phase.json").read_text())["rows"] == [{"k": 1}]
    rows.add({"k": 2})
    assert len(json.loads((tmp_path / "phase.json").read_text())["rows"]) == 2
    assert rows.fits(10) and not rows.fits(100)
    assert rows.skipped({"k": 4}, 100)["skipped"].startswith("would not finish before the phase's deadline")


def test_a_spent_phase_deadline_skips_the_packed_rows(tmp_path: Path) -> None:
    rows = Rows(tmp_path / "phase.json", deadline=time.time())
    device_phases.packed_phase(torch.device("cpu"), SMOKE, tmp_path, rows)
    assert [r.get("skipped", "")[:22] for r in rows.rows] == ["would not finish befor"] * 2 + ["MPS is a CUDA feature"]


def test_projections_scale_the_epoch_and_the_fast_path_uses_the_best_packing() -> None:
    epoch = {
        "train_s": 1.0,
        "train_images": 5000,
        "val_s": 0.5,
        "val_images": 1000,
        "epoch_s": 1.5,
        "fit_s": 20.0,
        "epochs": [{"epoch_s": 1.5}],
        "process_s": 2.0,
    }
    packed = [
        {"k": 1, "speedup": 1.0, "startup_s": 10.0},
        {"k": 4, "speedup": 3.0, "startup_s": 20.0},
        {"k": 8, "skipped": "x"},
    ]
    epoch_s = 50_000 / 5000 * 1.0 + 10_000 / 1000 * 0.5  # 10 s + 5 s
    fast = projection(epoch, packed)
    assert fast["epoch_s"] == pytest.approx(epoch_s) and fast["best_k"] == 4
    assert fast["hours"] == pytest.approx((90 * 300 * epoch_s / 3 + 90 * 20.0 / 4) / 3600)
    paper = projection(epoch, [])  # one run per GPU; start-up: the process's, and the fit's outside its epochs
    assert paper["best_k"] == 1 and paper["hours"] == pytest.approx(90 * (300 * epoch_s + 2.0 + 18.5) / 3600)
    assert projection(None, packed) == {"error": "no epoch time measured"}


def test_the_precision_row_can_fail() -> None:
    def run(precision: str, seed: int, acc: float, loss: float) -> dict[str, Any]:
        return {"precision": precision, "seed": seed, "val_acc1": acc, "val_loss": loss}

    close = [
        run("32-true", 0, 0.50, 1.5),
        run("bf16-mixed", 0, 0.51, 1.5),
        run("32-true", 1, 0.53, 1.4),
        run("bf16-mixed", 1, 0.52, 1.41),
    ]
    summary = precision_summary(close)
    assert summary["val_acc1"]["fp32_seed_difference"] == pytest.approx(0.03)
    assert summary["val_acc1"]["bf16_minus_fp32"] == pytest.approx(0.0)
    assert summary["val_acc1"]["verdict"] == "within the fp32 noise floor"
    far = [
        run("32-true", 0, 0.50, 1.5),
        run("bf16-mixed", 0, 0.40, 1.9),
        run("32-true", 1, 0.51, 1.5),
        run("bf16-mixed", 1, 0.41, 1.9),
    ]
    assert precision_summary(far)["val_acc1"]["verdict"] == "beyond the fp32 noise floor"
    assert precision_summary(far[:2])["val_acc1"]["verdict"] is None  # one seed: no noise floor, no verdict


def test_packed_children_get_the_device_as_given_and_resolve_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the children get ``cuda`` (no index): the memory cap goes to the current device, not a crash."""
    cuda = FakeCuda(monkeypatch, count=1)
    monkeypatch.setenv(MEMORY_FRACTION_ENV, "0.45")
    assert device_phases.child_device("cuda") == torch.device("cuda") and cuda.fractions == {0: 0.45}


def test_the_packed_window_starts_after_the_first_epochs_short_batch() -> None:
    assert device_phases.packed_warmup(FULL) > -(-FULL.train_images // 128)  # 391 steps in a CIFAR-10 epoch
    assert device_phases.packed_warmup(SMOKE) > -(-SMOKE.train_images // 128)


def test_host_syncs_are_counted_after_the_compiling_epoch_only(tmp_path: Path) -> None:
    modes: list[Any] = []
    seen: list[tuple[int, Any]] = []
    debug = device_phases.SyncDebugEpoch(modes.append)

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            seen.append((trainer.current_epoch, modes[-1] if modes else None))

    dm = CIFAR10DataModule(data_dir=str(write_cifar10(tmp_path, train=64, test=8)), verify=False, batch_size=32)
    model = ImageClassifier(device_phases._model("scale"), optimizer=device_phases.SGD)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=3,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[debug, Watch()],
    )
    trainer.fit(model, datamodule=dm)
    assert seen == [(0, None)] * 2 + [(1, "warn")] * 2 + [(2, 0)] * 2 and modes == ["warn", 0]
    assert debug.epochs == [1]


# Inductor's cache key pickles the loaded modules' state, touching jsonargparse's deprecated module aliases.
@pytest.mark.filterwarnings("ignore::jsonargparse._deprecated.JsonargparseDeprecationWarning")
def test_the_cuda_graph_skip_counter_is_where_the_check_reads_it() -> None:
    """A private Inductor counter (torch._dynamo.utils.counters): on the CPU, reduce-overhead skips CUDA graphs and
    counts it there. If torch moves the counter, this test fails rather than the GPU check reporting 0."""
    before = device_phases.cudagraph_skips()
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: x * 2 + 1, mode="reduce-overhead")
    compiled(torch.randn(8))
    assert device_phases.cudagraph_skips() > before


def test_synthetic_cifar10_is_read_by_the_real_loader(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, train=103, test=7, seed=1)
    dm = CIFAR10DataModule(data_dir=str(root), verify=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm._arrays["train"].images.shape == (103, 3, 32, 32) and dm._arrays["val"].images.shape == (7, 3, 32, 32)
    assert dm.class_names[0] == "airplane" and int(dm._arrays["train"].labels.max()) < 10
    with pytest.raises(ValueError, match="need at least 5 training and 1 test image"):
        write_cifar10(tmp_path / "x", train=3, test=1)


def test_a_cuda_check_without_cuda_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("optional: needs a machine without a visible GPU")
    assert device_check.main(["--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0 and not (tmp_path / "x").exists()
