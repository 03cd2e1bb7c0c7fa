"""Backbones (plain ``nn.Module``s) with non-local blocks placed by configuration.

Every backbone takes ``num_classes`` and the NL placement keywords ``nl``, ``nl_stages``, ``nl_blocks`` and
``nl_position`` (see :mod:`nlbench.models.placement`). Configs refer to the classes by ``class_path``, e.g.
``nlbench.models.PreActResNet``.
"""

from typing import Protocol, Union

from nlbench.models.placement import named_inserted_blocks, named_nl_blocks, nl_blocks_of, num_parameters
from nlbench.models.preact_resnet import PreActResNet, PreActResNetTiny
from nlbench.models.wide_resnet import WideResNet


class AnyModule(Protocol):
    """Any ``torch.nn.Module`` given by ``class_path`` (e.g. ``torchvision.models.ResNet``).

    Structural, so that the help of ``--model.backbone`` lists nlbench's backbones instead of every ``nn.Module``
    subclass that happens to be imported (about 540 of them)."""

    def parameters(self): ...  # noqa: ANN201 - any signature and return type matches

    def state_dict(self): ...  # noqa: ANN201

    def named_modules(self): ...  # noqa: ANN201


# The type of ImageClassifier's backbone: nlbench's backbones by name, or any nn.Module.
Backbone = Union[PreActResNet, PreActResNetTiny, WideResNet, AnyModule]

__all__ = [
    "AnyModule",
    "Backbone",
    "PreActResNet",
    "PreActResNetTiny",
    "WideResNet",
    "named_inserted_blocks",
    "named_nl_blocks",
    "nl_blocks_of",
    "num_parameters",
]
