"""A run that ran out of GPU memory: the one line its record says, with one line of advice, and how the sweep
recognises it (to retry the run once alone on a device). Torch-free but for :func:`describe`, which the fit calls.

The record's error reads ``out of memory (cap 17.8 GiB of 79.1 GiB): <advice>``: the cap is the allocator limit a
packed run was given (``runs_per_device: k`` -> 0.9 / k of the device, :mod:`nlbench.device_share`), so the user
sees at once whether packing or the run itself is too big.
"""

from __future__ import annotations

from typing import Any

PREFIX = "out of memory"
# What a fit that died of it before writing its record leaves as its log's last line (torch's exception).
_TORCH_MARKERS = ("OutOfMemoryError", "CUDA out of memory")


def message(cap_gib: float | None, total_gib: float | None, *, packed: bool) -> str:
    """``out of memory (cap X GiB of Y GiB): advice``; the cap None when the run had no allocator limit."""
    total = f"{total_gib:.1f} GiB" if total_gib is not None else "an unknown size"
    where = f"cap {cap_gib:.1f} GiB of {total}" if cap_gib is not None else f"no cap, {total}"
    if packed:
        advice = (
            "lower runs_per_device (each of k runs sharing a GPU may allocate 0.9/k of it) or data.batch_size; "
            "nlbench sweep retries such a run once alone on a GPU"
        )
    else:
        advice = "lower data.batch_size (or the model's size): the run had the GPU to itself"
    return f"{PREFIX} ({where}): {advice}"


def describe(device: Any) -> str:
    """The message for this process's run on `device` (a torch.device): its cap and the device's memory."""
    import torch

    from nlbench.device_share import requested_fraction, with_index

    total = cap = None
    fraction = requested_fraction()
    if getattr(device, "type", None) == "cuda" and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(with_index(device)).total_memory / 2**30
        cap = fraction * total if fraction is not None else None
    return message(cap, total, packed=fraction is not None)


def is_out_of_memory_exception(err: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA's allocator refusing; a packed run over its cap raises it too)."""
    import torch

    return isinstance(err, torch.OutOfMemoryError)


def is_out_of_memory(error: str | None) -> bool:
    """Whether a record's error (or a failed fit's last log line) says the run ran out of GPU memory."""
    return bool(error) and (error.startswith(PREFIX) or any(marker in error for marker in _TORCH_MARKERS))
