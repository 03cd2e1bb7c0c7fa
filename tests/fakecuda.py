"""A fake CUDA runtime for CPU tests: only the C entry points torch's Python layer calls are replaced, so torch's own
argument checks (``torch.cuda.set_per_process_memory_fraction``, ``torch.cuda.device``, ``_get_device_index``) run
unchanged and refuse what they refuse on a GPU -- e.g. ``torch.device("cuda")`` without an index.

    with FakeCuda(monkeypatch, count=2) as cuda: ...   # cuda.fractions: {device index: fraction}
"""

from __future__ import annotations

from typing import Any

import pytest
import torch


class FakeCuda:
    """`count` visible devices, device 0 current; records memory fractions and per-device RNG states."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int = 1) -> None:
        self.count, self.current = count, 0
        self.fractions: dict[int, float] = {}
        self.rng: dict[int, torch.Tensor] = {i: torch.tensor([i], dtype=torch.uint8) for i in range(count)}
        mp = monkeypatch
        for module in (torch.cuda, torch.cuda.memory, torch.cuda.random):
            if hasattr(module, "_lazy_init"):
                mp.setattr(module, "_lazy_init", lambda: None)
        mp.setattr(torch.cuda, "is_available", lambda: True)
        mp.setattr(torch.cuda, "device_count", lambda: self.count)
        mp.setattr(torch._C, "_cuda_getDevice", lambda: self.current)
        mp.setattr(torch.cuda, "_exchange_device", self._exchange)
        mp.setattr(torch.cuda, "_maybe_exchange_device", self._exchange)
        mp.setattr(torch._C, "_cuda_setMemoryFraction", self._set_fraction)
        mp.setattr(torch.cuda, "get_rng_state", self._get_rng)
        mp.setattr(torch.cuda, "set_rng_state", self._set_rng)
        mp.setattr(torch.cuda, "get_rng_state_all", lambda: [self.rng[i].clone() for i in range(self.count)])
        mp.setattr(torch.cuda, "set_rng_state_all", lambda states: [self._set_rng(s, i) for i, s in enumerate(states)])

    def __enter__(self) -> FakeCuda:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def _index(self, device: Any) -> int:
        index = torch.cuda._get_device_index(device, optional=True) if not isinstance(device, int) else device
        if not 0 <= index < self.count:  # what the CUDA runtime answers for a device that is not there
            raise RuntimeError("CUDA error: invalid device ordinal")
        return index

    def _exchange(self, device: int) -> int:
        if device < 0:
            return -1
        previous, self.current = self.current, self._index(device)
        return previous

    def _set_fraction(self, fraction: float, device: int) -> None:
        self.fractions[self._index(device)] = fraction

    def _get_rng(self, device: Any = "cuda") -> torch.Tensor:
        return self.rng[self._index(device)].clone()

    def _set_rng(self, state: torch.Tensor, device: Any = "cuda") -> None:
        self.rng[self._index(device)] = state.clone()
