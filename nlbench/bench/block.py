"""Forward+backward time and peak memory of the non-local block variants and its peers across feature-map sizes.

    python -m nlbench.bench.block --device cpu --batch 16 --sizes [8,16,32,56,112]
    nlbench bench block --methods [softmax,my_pkg.attn.SigmoidAttention] --blocks []

Variants, from the registries (nlbench.nn.registry), so a registered or user method needs no edit here: the NL
block with every normalization of ``--methods`` (default: all registered), where softmax is run through SDPA's
fused kernels (the block's path) and forced onto SDPA's math kernel (the explicit bmm-softmax-bmm of the official
code, for reference) and scale in the N x N order and re-associated; then every peer block of ``--blocks``
(default: all registered besides the NL block: gc, se).

Prints a markdown table; each row names the SDPA kernel its forward ran (flash, cuDNN, memory-efficient, math: SDPA
chooses per device, dtype and head width; :mod:`nlbench.nn.sdpa`). Time (wall clock, or process CPU time with ``--clock
cpu``): median over ``--reps`` timed forward+backward passes (training mode, an input that requires grad, a fixed random
output gradient) after ``--warmup`` untimed ones. Peak memory: the most memory held at any point of one extra
forward+backward beyond what was allocated before it (parameters, input), so it counts activations, any attention map
and the gradients. On CUDA that is ``torch.cuda.max_memory_allocated``; on CPU it is the running sum of the allocation
and free events that the PyTorch profiler records with ``profile_memory=True`` (every tensor allocation through the CPU
allocator),
peaked."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from nlbench.bench.timing import synchronize
from nlbench.nn import BLOCKS, NORMALIZATIONS, NonLocal2d, method_name
from nlbench.nn.registry import DEFAULT_BLOCK, UnknownMethodError
from nlbench.nn.sdpa import kernels_in, quiet_kineto

GiB = 2**30
MiB = 2**20


@dataclass(frozen=True)
class Variant:
    name: str
    normalization: str  # registered name or class path (NL block variants)
    order: str = "reassociated"
    quadratic: bool | None = None  # O(N^2) work; None: the normalization's ``quadratic`` attribute (default True)
    maps_held: int = 2  # N x N maps alive at once in forward+backward when quadratic (0 when none is materialised)
    sdpa_backends: tuple[SDPBackend, ...] = ()  # restrict SDPA to these kernels; () = its own choice
    block: str = DEFAULT_BLOCK  # a peer block (gc, se, class path) instead of the NL block

    def is_quadratic(self, module: torch.nn.Module) -> bool:
        if self.block != DEFAULT_BLOCK:
            return False
        if self.quadratic is not None:
            return self.quadratic
        return bool(getattr(getattr(module, "attention", None), "quadratic", True))


# The paper's two methods, each in the evaluation paths worth comparing.
_PAPER_VARIANTS = {
    "softmax": (
        Variant("softmax (SDPA)", "softmax", quadratic=True, maps_held=0),
        # The math kernel computes softmax(q k^T) v explicitly, as the official code's bmm-softmax-bmm does.
        Variant("softmax (unfused)", "softmax", quadratic=True, maps_held=3, sdpa_backends=(SDPBackend.MATH,)),
    ),
    "scale": (
        Variant("scale nxn", "scale", "nxn", quadratic=True, maps_held=2),
        Variant("scale re-associated", "scale", "reassociated", quadratic=False, maps_held=0),
    ),
}


def variants(methods: list[str] | None = None, blocks: list[str] | None = None) -> tuple[Variant, ...]:
    """The benchmarked variants: NL blocks with each of ``methods`` (default: every registered normalization), then
    each peer block of ``blocks`` (default: every registered block besides the NL block)."""
    methods = list(NORMALIZATIONS) if methods is None else methods
    blocks = [b for b in BLOCKS if b != DEFAULT_BLOCK] if blocks is None else blocks
    chosen: list[Variant] = []
    for option, registry, values in (("--methods", NORMALIZATIONS, methods), ("--blocks", BLOCKS, blocks)):
        for value in values:
            try:  # an unknown name fails here, before anything is timed
                registry.resolve(value)
            except UnknownMethodError as err:
                raise ValueError(f"{option}: {str(err).split(': ', 1)[1]}") from None
    for method in methods:
        chosen += _PAPER_VARIANTS.get(method, (Variant(method_name(method), method),))
    for block in blocks:
        chosen.append(Variant(f"{BLOCKS.name_of(block)} block", "", block=block))
    return tuple(chosen)


VARIANTS = variants()

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
PLAIN_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _step_fn(
    block: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, variant: Variant, autocast_dtype: torch.dtype | None
) -> Callable[[], None]:
    def step() -> None:
        block.zero_grad(set_to_none=True)
        x.grad = None
        with (
            sdpa_kernel(list(variant.sdpa_backends)) if variant.sdpa_backends else nullcontext(),
            torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
        ):
            out = block(x)
        out.backward(grad)

    return step


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_ms(step: Callable[[], None], device: torch.device, *, warmup: int, reps: int, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        synchronize(device)
        start = now()
        step()
        synchronize(device)
        times.append(now() - start)
    return 1000 * statistics.median(times)


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with quiet_kineto(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # The raw profiler events carry every allocation (+bytes) and free (-bytes) with its time; the aggregated
    # FunctionEvents net them per op and would hide peaks inside an op.
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def estimate(
    variant: Variant, *, batch: int, width: int, positions: int, map_element_size: int, quadratic: bool
) -> tuple[float, float]:
    """(GiB of N x N maps held at once, GFLOP of the N^2 attention products in forward+backward) of a variant."""
    if not quadratic:
        return 0.0, 0.0
    pairs = batch * positions * positions
    # q k^T and (.) v in forward, twice as many products in backward; 2 FLOP per multiply-add.
    gflop = 6 * 2 * pairs * width / 1e9
    return variant.maps_held * pairs * map_element_size / GiB, gflop


BLOCK_HEADER = (
    "| size | N | variant | SDPA kernel | time (ms) | peak memory (MiB) | speedup vs softmax (SDPA) "
    "| vs softmax (unfused) |\n|---|---|---|---|---|---|---|---|"
)


def block_row(record: dict) -> str:
    """One markdown row of the block table."""
    row = (
        f"| {record['size']}x{record['size']} | {record['positions']} | {record['variant']} | "
        f"{record.get('sdpa') or '–'} |"
    )
    if record.get("skipped"):
        return f"{row} skipped ({record['skipped']}) | | | |"
    speedups = [f"{v:.1f}x" if v is not None else "n/a" for v in (record["vs_sdpa"], record["vs_unfused"])]
    return f"{row} {record['time_ms']:.2f} | {record['peak_mib']:.2f} | {' | '.join(speedups)} |"


def block_records(
    device: torch.device,
    sizes: list[int],
    *,
    batch: int,
    channels: int = 64,
    reduction: int = 2,
    heads: int = 1,
    reps: int = 5,
    warmup: int = 2,
    dtype: str = "float32",
    max_gib: float = 8.0,
    max_gflop: float = 500.0,
    compile: bool = False,
    clock: str = "wall",
    on_record: Callable[[dict], None] | None = None,
    methods: list[str] | None = None,
    blocks: list[str] | None = None,
) -> list[dict]:
    """Time and peak memory of every variant (:func:`variants` of ``methods`` and ``blocks``) at every size (see
    the module docstring), one record per row."""
    chosen = variants(methods, blocks)
    param_dtype = PLAIN_DTYPES.get(dtype, torch.float32)
    autocast_dtype = AUTOCAST_DTYPES.get(dtype)
    # Explicit maps are float32 (float64 for float64 blocks) whatever the autocast dtype.
    map_element_size = 8 if param_dtype == torch.float64 else 4
    records: list[dict] = []
    for side in sizes:
        positions = side * side
        reference_ms: dict[str, float] = {}
        for variant in chosen:
            if variant.block == DEFAULT_BLOCK:
                block = NonLocal2d(
                    channels,
                    normalization=variant.normalization,
                    order=variant.order,
                    reduction=reduction,
                    heads=heads,
                )
            else:
                block = BLOCKS.resolve(variant.block)(channels)
            block = block.to(device=device, dtype=param_dtype)
            gib, gflop = estimate(
                variant,
                batch=batch,
                width=getattr(block, "width", channels),
                positions=positions,
                map_element_size=map_element_size,
                quadratic=variant.is_quadratic(block),
            )
            record: dict = {
                "size": side,
                "positions": positions,
                "variant": variant.name,
                "dtype": dtype,
                "batch": batch,
                "time_ms": None,
                "peak_mib": None,
                "vs_sdpa": None,
                "vs_unfused": None,
                "skipped": None,
                "sdpa": None,
            }
            if gib > max_gib:
                record["skipped"] = f"estimated {gib:.1f} GiB"
            elif gflop > max_gflop:
                record["skipped"] = f"estimated {gflop:.0f} GFLOP"
            else:
                model = torch.compile(block) if compile else block
                x = torch.randn(batch, channels, side, side, device=device, dtype=param_dtype, requires_grad=True)
                step = _step_fn(model, x, torch.randn_like(x), variant, autocast_dtype)
                ms = time_ms(step, device, warmup=warmup, reps=reps, clock=clock)
                if variant.name in ("softmax (SDPA)", "softmax (unfused)"):
                    reference_ms[variant.name] = ms
                # Which SDPA kernel ran (None for variants without SDPA): one more step, under the profiler.
                record["sdpa"] = "+".join(kernels_in(step)) or None
                record.update(
                    time_ms=ms,
                    peak_mib=peak_bytes(step, device) / MiB,
                    vs_sdpa=reference_ms["softmax (SDPA)"] / ms if "softmax (SDPA)" in reference_ms else None,
                    vs_unfused=reference_ms["softmax (unfused)"] / ms if "softmax (unfused)" in reference_ms else None,
                )
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records


def parse_args(argv: list[str] | None) -> object:
    from jsonargparse import ArgumentParser  # the CLI only: the device check imports this module

    parser = ArgumentParser(prog="nlbench bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=list[int], default=[8, 16, 32, 56, 112], help="feature-map sides H = W")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--reduction", type=int, default=2)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument(
        "--methods",
        type=list[str] | None,
        default=None,
        help="normalizations of the NL block: registered names or class paths (default: all "
        f"registered: {', '.join(NORMALIZATIONS)})",
    )
    parser.add_argument(
        "--blocks",
        type=list[str] | None,
        default=None,
        help="peer blocks at the insertion point: registered names or class paths (default: "
        f"{', '.join(b for b in BLOCKS if b != DEFAULT_BLOCK)}); [] for none",
    )
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--dtype",
        type=str,
        default="float32",
        help="float32 | float64 (block and input in that dtype) | bfloat16 | float16 (autocast, float32 weights)",
    )
    parser.add_argument("--max_gib", type=float, default=8.0, help="skip N x N variants whose maps would exceed this")
    parser.add_argument("--max_gflop", type=float, default=500.0, help="skip N^2 variants whose work would exceed this")
    parser.add_argument("--compile", type=bool, default=False, help="torch.compile each block (compile time not timed)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--clock",
        type=str,
        default="wall",
        help="wall | cpu: CPU time of the process (CPU device only); with --threads 1 it stays meaningful on a busy "
        "shared machine, where wall time mostly measures waiting for a core",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dtype not in {**PLAIN_DTYPES, **AUTOCAST_DTYPES}:
        raise ValueError(f"--dtype must be one of {', '.join([*PLAIN_DTYPES, *AUTOCAST_DTYPES])}; got {args.dtype!r}")
    if args.clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}; got {args.clock!r}")
    if args.clock == "cpu" and args.device.startswith("cuda"):
        raise ValueError("--clock cpu measures host CPU time; use --clock wall with a CUDA device")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    chosen = variants(args.methods, args.blocks)  # unknown names: one line before anything runs
    device = torch.device(args.device)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(
        f"Block forward+backward ({len(chosen)} variants): device={device}, dtype={args.dtype}, batch={args.batch}, "
        f"channels={args.channels}, reduction={args.reduction}, heads={args.heads}, compile={args.compile}, "
        f"{args.clock} clock, median of {args.reps} after {args.warmup} warm-up; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average at start {load}\n"
    )
    print(BLOCK_HEADER)
    block_records(
        device,
        args.sizes,
        batch=args.batch,
        channels=args.channels,
        reduction=args.reduction,
        heads=args.heads,
        reps=args.reps,
        warmup=args.warmup,
        dtype=args.dtype,
        max_gib=args.max_gib,
        max_gflop=args.max_gflop,
        compile=args.compile,
        clock=args.clock,
        on_record=lambda r: print(block_row(r), flush=True),
        methods=args.methods,
        blocks=args.blocks,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
