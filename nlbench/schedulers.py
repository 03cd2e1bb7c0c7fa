"""Learning-rate schedules whose length the run fills in (see ``ImageClassifier.configure_optimizers``) and whose
learning rate is the optimizer's: ``model.optimizer.init_args.lr`` is the one learning-rate knob."""

from __future__ import annotations

from typing import Any, Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR as _CosineAnnealingLR
from torch.optim.lr_scheduler import OneCycleLR as _OneCycleLR


class CosineAnnealingLR(_CosineAnnealingLR):
    """torch's CosineAnnealingLR with ``T_max`` optional in configs: left unset (null), the classifier fills it with
    the run's length, in steps for ``scheduler_interval: step`` (the official ``--cos``: per-iteration cosine from
    the base lr to ``eta_min`` = 0 over epochs x iterations per epoch, no warm-up) or in epochs."""

    def __init__(
        self, optimizer: Optimizer, T_max: int | None = None, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_max is None:
            raise ValueError("model.scheduler: CosineAnnealingLR needs T_max; the classifier fills it in when unset")
        if T_max < 1:
            raise ValueError(f"model.scheduler: CosineAnnealingLR T_max must be >= 1, got {T_max}")
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min, last_epoch=last_epoch)


class OneCycleLR(_OneCycleLR):
    """torch's OneCycleLR whose peak follows the optimizer: ``max_lr`` left unset (null) is the optimizer's lr (per
    parameter group), so ``model.optimizer.init_args.lr`` is the one learning-rate knob whatever the schedule -- a
    sweep over it then changes the runs, instead of being silently overridden by a fixed max_lr. ``total_steps``
    left unset is filled in with the run's length by the classifier, as for torch's class."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float] | None = None,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        if max_lr is None:
            max_lr = [group["lr"] for group in optimizer.param_groups]
        super().__init__(
            optimizer,
            max_lr=max_lr,
            total_steps=total_steps,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
            last_epoch=last_epoch,
        )


def lr_overridden_by(scheduler: Any) -> str | None:
    """Why the optimizer's lr has no effect under ``scheduler`` (a parsed ``model.scheduler`` config: a mapping or
    Namespace with ``class_path`` and ``init_args``), or None when it is used. One place for every such rule."""
    if not scheduler:
        return None
    get = scheduler.get if hasattr(scheduler, "get") else lambda key, default=None: getattr(scheduler, key, default)
    class_path = str(get("class_path", "") or "")
    init = get("init_args") or {}
    init_get = init.get if hasattr(init, "get") else lambda key, default=None: getattr(init, key, default)
    name = class_path.rsplit(".", 1)[-1]
    if name == "OneCycleLR" and init_get("max_lr") is not None:
        return f"{name}'s max_lr ({init_get('max_lr')}) sets the learning rate"
    if name == "CyclicLR":
        return f"{name}'s base_lr/max_lr set the learning rate"
    return None
