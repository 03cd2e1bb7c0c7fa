"""Backbones (plain ``nn.Module``s) with non-local blocks placed by configuration.

Every backbone takes ``num_classes`` and the NL placement keywords ``nl``, ``nl_stages``, ``nl_blocks`` and
``nl_position`` (see :mod:`nlbench.models.placement`). Configs refer to the classes by ``class_path``, e.g.
``nlbench.models.PreActResNet``.
"""

from nlbench.models.placement import named_nl_blocks, nl_blocks_of, num_parameters
from nlbench.models.preact_resnet import PreActResNet, PreActResNetTiny
from nlbench.models.wide_resnet import WideResNet

__all__ = [
    "PreActResNet",
    "PreActResNetTiny",
    "WideResNet",
    "named_nl_blocks",
    "nl_blocks_of",
    "num_parameters",
]
