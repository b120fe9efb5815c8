"""Importing this module registers ``torch_reference``'s size factories in timm's model
registry, as upstream registers its models, under ``videomae_``-prefixed names::

    import torch_reference.timm_registry  # noqa: F401
    timm.create_model("videomae_vit_small_patch16_224", num_classes=400)

Kept out of ``import torch_reference``: timm imports torchvision, ``torch._dynamo`` and triton,
about 3 s that no conversion needs, and it is not installed with the package (``pip install
'videomae-convert[timm]'``; the test extra has it). After TensorFlow in one process it loads
only with triton marked absent, which ``import converter`` does (README "Import order").
"""

from timm.models import register_model

from . import FACTORIES

for _factory in FACTORIES.values():
    register_model(_factory)
