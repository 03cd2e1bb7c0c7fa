"""Learning-rate schedules whose length the run fills in (see ``ImageClassifier.configure_optimizers``)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR as _CosineAnnealingLR


class CosineAnnealingLR(_CosineAnnealingLR):
    """torch's CosineAnnealingLR with ``T_max`` optional in configs: left unset (null), the classifier fills it with
    the run's length, in steps for ``scheduler_interval: step`` (the official ``--cos``: per-iteration cosine from
    the base lr to ``eta_min`` = 0 over epochs x iterations per epoch, no warm-up) or in epochs."""

    def __init__(self, optimizer: Optimizer, T_max: int | None = None, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if T_max is None:
            raise ValueError("model.scheduler: CosineAnnealingLR needs T_max; the classifier fills it in when unset")
        if T_max < 1:
            raise ValueError(f"model.scheduler: CosineAnnealingLR T_max must be >= 1, got {T_max}")
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min, last_epoch=last_epoch)
