"""Sweep specs: grid expansion, explicit points, stable run ids, clear errors, checks against the real fit parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nlbench.schema import column_names
from nlbench.sweep.spec import SweepSpecError, load_spec, validate_runs

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"


def write(tmp_path: Path, body: str, *, base_name: str = "base.yaml", name: str = "sweep.yaml") -> Path:
    (tmp_path / base_name).write_text("trainer: {}\n")
    spec = tmp_path / name
    spec.write_text(body)
    return spec


def test_grid_is_the_product_of_the_axes_plus_the_explicit_points(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
base: base.yaml
overrides: {trainer.max_epochs: 3}
axes:
  model.backbone.nl.normalization: [softmax, scale]
  model.backbone.nl_stages: [[2], [1, 2]]
points:
  - {model.backbone.nl_stages: []}
""",
        )
    )
    runs = spec.expand()
    assert [dict(r.params) for r in runs] == [
        {"model.backbone.nl.normalization": "softmax", "model.backbone.nl_stages": [2]},
        {"model.backbone.nl.normalization": "softmax", "model.backbone.nl_stages": [1, 2]},
        {"model.backbone.nl.normalization": "scale", "model.backbone.nl_stages": [2]},
        {"model.backbone.nl.normalization": "scale", "model.backbone.nl_stages": [1, 2]},
        {"model.backbone.nl_stages": []},
    ]
    assert [r.origin for r in runs] == ["grid"] * 4 + ["points[0]"]
    assert spec.name == "sweep" and spec.output_dir == Path("sweeps/sweep").absolute()
    assert spec.fit_args(runs[1].params) == [
        "--config",
        str(tmp_path / "base.yaml"),
        "--trainer.max_epochs=3",
        "--model.backbone.nl.normalization=softmax",
        "--model.backbone.nl_stages=[1,2]",
    ]


def test_run_ids_are_readable_stable_and_independent_of_key_order(tmp_path: Path) -> None:
    a = load_spec(
        write(
            tmp_path,
            """
base: base.yaml
overrides: {trainer.max_epochs: 300, data.download: true}
axes: {model.backbone.nl.normalization: [softmax, scale], model.backbone.nl.init: [normal], seed_everything: [0, 1]}
""",
        )
    )
    other = tmp_path / "other"
    other.mkdir()
    b = load_spec(
        write(
            other,
            """
base: base.yaml
overrides: {data.download: true, trainer.max_epochs: 300}
axes: {seed_everything: [1, 0], model.backbone.nl.init: [normal], model.backbone.nl.normalization: [scale, softmax]}
""",
        )
    )
    ids = [r.run_id for r in a.expand()]
    assert re.fullmatch(r"init=normal_normalization=softmax_seed=0-[0-9a-f]{8}", ids[0])
    assert len(set(ids)) == 4
    assert sorted(ids) == sorted(r.run_id for r in b.expand())  # other folder, other order: same runs
    assert [r.run_id for r in a.expand()] == ids  # deterministic
    c = load_spec(write(tmp_path, a.source.read_text().replace("300", "200"), name="c.yaml"))
    assert not set(ids) & {r.run_id for r in c.expand()}  # another fixed override: other runs
    d = load_spec(write(tmp_path, a.source.read_text().replace("base.yaml", "b2.yaml"), base_name="b2.yaml"))
    assert not set(ids) & {r.run_id for r in d.expand()}  # another base config: other runs


BAD_SPECS = [
    ("axes: {model.backbone.nl.reduction: []}", "axis 'model.backbone.nl.reduction' is an empty list"),
    ("axes: {model.backbone.nl.reduction: 2}", "axis 'model.backbone.nl.reduction' must be a list of values, got 2"),
    ("axes: {model.x: [2020-01-01]}", "axis 'model.x' value datetime.date(2020, 1, 1) has type date"),
    ("axes: [model.x]", "'axes' must map dotted config keys to lists of values"),
    ("axes: {model.x: [1, 2, 1]}", "axis 'model.x' lists the value 1 more than once"),
    ("axis: {model.x: [1]}", "unknown key(s) axis"),
    ("axes: {'--model.x': [1]}", "'--model.x' is not a dotted config key"),
    ("axes: {trainer.devices: [1, 2]}", "'trainer.devices' is set by the sweep itself"),
    ("axes: {model.x: [1]}\noverrides: {model.x: 2}", "'model.x' is both an axis and a fixed override"),
    ("axes: {model.x: [1, 2]}\npoints: [{model.x: 2}]", "points[0] {model.x: 2} duplicates a grid point"),
    ("points: [{model.x: 2}, {model.x: 2}]", "points[1] {model.x: 2} duplicates points[0]"),
    ("points: {model.x: 2}", "'points' must be a list"),
    ("overrides: {model.x: 1}", "no runs: give 'axes' and/or 'points'"),
    ("axes: {model.x: [1]}\ndevices_per_run: 0", "'devices_per_run' must be a positive integer, got 0"),
    ("axes: {model.x: [1]}\ndevices_per_run: two", "'devices_per_run' must be a positive integer, got 'two'"),
    ("axes: {model.x: [1]}\ndevices_per_run: true", "'devices_per_run' must be a positive integer, got True"),
]


@pytest.mark.parametrize(("body", "message"), BAD_SPECS)
def test_bad_specs_fail_with_one_clear_line(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "base: base.yaml\n" + body)
    with pytest.raises(SweepSpecError) as err:
        load_spec(path).expand()
    assert message in str(err.value)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sweep spec not found"):
        load_spec(tmp_path / "nope.yaml")
    spec = write(tmp_path, "base: [base.yaml, ../configs/missing.yaml]\naxes: {model.x: [1]}")
    with pytest.raises(FileNotFoundError, match=r"base config '../configs/missing.yaml' not found"):
        load_spec(spec)


def test_column_names_are_short_unique_and_avoid_metric_names() -> None:
    keys = ["model.backbone.nl.init", "model.init", "seed_everything", "model.backbone.nl.reduction", "x.epochs"]
    assert column_names(keys, taken=["epochs"]) == {
        "model.backbone.nl.init": "nl.init",
        "model.init": "model.init",
        "seed_everything": "seed",
        "model.backbone.nl.reduction": "reduction",
        "x.epochs": "x.epochs",
    }


def test_every_run_is_checked_by_the_real_fit_parser(tmp_path: Path) -> None:
    def spec_with(axes: str, overrides: str = "{}"):
        path = tmp_path / "s.yaml"
        path.write_text(f"base: {DEMO}\noverrides: {overrides}\naxes: {axes}\n")
        return load_spec(path)

    good = spec_with("{model.backbone.nl.normalization: [softmax, scale]}", "{trainer.max_epochs: 2}")
    parsed = validate_runs(good, good.expand())
    assert [parsed[r.run_id].trainer.max_epochs for r in good.expand()] == [2, 2]
    assert [parsed[r.run_id].model.backbone.init_args.nl.normalization for r in good.expand()] == ["softmax", "scale"]

    bad_value = spec_with("{model.backbone.nl.normalization: [softmax], model.backbone.nl.reduction: [2, abc]}")
    with pytest.raises(SweepSpecError, match=r"axis 'model.backbone.nl.reduction' value 'abc': .*Expected a .*int"):
        validate_runs(bad_value, bad_value.expand())
    unknown = spec_with("{model.backbone.nl.flavour: [1]}")
    with pytest.raises(SweepSpecError, match=r"axis 'model.backbone.nl.flavour' value 1: .*unrecognized.*flavour"):
        validate_runs(unknown, unknown.expand())
    bad_fixed = spec_with("{seed_everything: [0]}", "{trainer.max_epochs: many}")
    with pytest.raises(SweepSpecError, match=r"base config with 'overrides' is not a valid fit config: .*max_epochs"):
        validate_runs(bad_fixed, bad_fixed.expand())


# ---- big grids: a size limit, and validation of what can differ instead of every product --------------------------
def test_a_grid_above_the_limit_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    values = ", ".join(map(str, range(400)))
    axes = f"axes: {{model.x: [{values}], model.y: [{values}]}}\n"
    spec = load_spec(write(tmp_path, "base: base.yaml\n" + axes))
    assert spec.size == 160_000
    with pytest.raises(
        SweepSpecError,
        match=r"160,000 runs \(axes 400 x 400, 0 points\) exceed the limit of 100,000.*"
        r"on the command line with --grid-limit 160000$",
    ):
        spec.expand()
    # Issue 20 item 14: a received spec may not raise its own limit; only the command line may (nlbench.sweep_command).
    with pytest.raises(
        SweepSpecError,
        match=r"'grid_limit' 200,000 raises the limit of 100,000; a spec may only "
        r"lower it, raise it on the command line with --grid-limit N",
    ):
        load_spec(write(tmp_path, "base: base.yaml\ngrid_limit: 200000\n" + axes, name="raised.yaml"))
    lowered = load_spec(write(tmp_path, "base: base.yaml\ngrid_limit: 10\naxes: {model.x: [1]}\n", name="low.yaml"))
    assert lowered.grid_limit == 10
    with pytest.raises(SweepSpecError, match="'grid_limit' must be a positive integer, got 0"):
        load_spec(write(tmp_path, "base: base.yaml\ngrid_limit: 0\n" + axes, name="zero.yaml"))


def test_validation_parses_each_value_of_each_axis_and_each_point_not_every_product(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
base: base.yaml
axes: {model.a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], model.b: [0, 1, 2, 3, 4], seed_everything: [0, 1, 2, 3, 4, 5, 6, 7]}
points: [{model.a: 99}]
""",
        )
    )
    runs = spec.expand()
    parsed_args: list[list[str]] = []

    def parse(args: list[str]) -> list[str]:
        parsed_args.append(args)
        return args

    parsed = validate_runs(spec, runs, parse_args=parse, progress=False)
    assert len(runs) == 401 and len(parsed_args) == 1 + 10 + 1  # base, the longest axis, the point
    grid = {r.run_id for r in runs if r.origin == "grid"}
    assert {k for k in parsed if k} <= {r.run_id for r in runs} and len(parsed) == 12
    assert len({k for k in parsed if k in grid}) == 10  # each probe is a real grid point
    for key, values in spec.axes.items():  # every value of every axis was parsed
        for value in values:
            assert any(f"--{key}={value}" in args for args in parsed_args), (key, value)
    assert any("--model.a=99" in args for args in parsed_args)

    class Rejected(ValueError):
        pass

    def strict(args: list[str]) -> list[str]:
        if "--model.b=3" in args:
            raise Rejected("model.b: 3 is not allowed")
        return args

    from nlbench.sweep.spec import _validate

    with pytest.raises(SweepSpecError, match=r"axis 'model.b' value 3: model.b: 3 is not allowed"):
        _validate(spec, runs, strict, Rejected)  # a bad value in the middle of an axis is still found


def test_negative_values_keep_their_sign_in_run_ids(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "base: base.yaml\naxes: {trainer.max_epochs: [-1, 1], model.lr: [-0.5]}\n"))
    prefixes = [r.run_id.rsplit("-", 1)[0] for r in spec.expand()]
    assert prefixes == ["lr=-0.5_max_epochs=-1", "lr=-0.5_max_epochs=1"]


def test_the_real_parser_rejects_a_trainer_value_lightning_refuses(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {DEMO}\naxes: {{trainer.max_epochs: [-1, -5]}}\n")
    spec = load_spec(path)
    with pytest.raises(SweepSpecError, match=r"axis 'trainer.max_epochs' value -5: trainer.max_epochs: .*-1"):
        validate_runs(spec, spec.expand(), progress=False)


# ---- what a hostile or careless spec may not do (issue 20 items 12, 14, 16) -----------------------------------------
@pytest.mark.parametrize("name", ["../../victim", "a/b", "/abs", "..", ".", "", " x", "x\ny"])
def test_name_is_a_plain_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(SweepSpecError, match=r"'name' must be a plain file name"):
        load_spec(write(tmp_path, f"name: {json.dumps(name)}\nbase: base.yaml\naxes: {{seed_everything: [0]}}\n"))


def test_an_override_too_long_for_a_command_line_is_refused_naming_its_key(tmp_path: Path) -> None:
    big = "x" * 200_000  # the attack's 200 KB value: passed --dry-run, then "Argument list too long"
    for body, where in (
        (f"overrides: {{model.note: {big}}}\naxes: {{seed_everything: [0]}}", "overrides"),
        (f"axes: {{model.note: [a, {big}]}}", "axis 'model.note'"),
        (f"points: [{{model.note: {big}}}]", "points[0]"),
    ):
        with pytest.raises(SweepSpecError, match=rf"{re.escape(where)}: the value of 'model.note' is 200,013 bytes"):
            load_spec(write(tmp_path, "base: base.yaml\n" + body + "\n"))
    # The attack through the CLI: the dry run now refuses it (exit 2, one line) instead of passing it.
    from nlbench.sweep_command import main

    path = write(tmp_path, f"base: base.yaml\noverrides: {{model.note: {big}}}\naxes: {{seed_everything: [0]}}\n")
    assert main(["--config", str(path), "--dry-run", "--devices", "cpu"]) == 2
    many = "{" + ", ".join(f"model.k{i}: {'y' * 90_000}" for i in range(12)) + "}"
    with pytest.raises(SweepSpecError, match=r"the overrides of a run take 1,080,\d+ bytes on the command line"):
        load_spec(write(tmp_path, f"base: base.yaml\noverrides: {many}\naxes: {{seed_everything: [0]}}\n"))
