"""videomae-convert: official PyTorch VideoMAE checkpoints -> checked TensorFlow / Keras models.

One process holds torch and TensorFlow. triton's native library (torch._dynamo loads it;
torchvision, and so timm, import that) kills the process when it loads after TensorFlow's
(README "Import order"). A conversion needs none of them, so this package imports torch
alone, and marks triton absent (``sys.modules["triton"] = None``) when it is not loaded yet:
torch and torchvision then run without it, as on any machine without triton, so ``import
timm`` after this package works instead of crashing. Import order no longer matters.
"""

import sys

__version__ = "0.1.0"

# torch runs without triton (a GPU kernel compiler) when it is absent. A triton already
# loaded came before TensorFlow (after it, the process would have died): left as it is.
if "triton" not in sys.modules:
    sys.modules["triton"] = None

import torch_reference  # noqa: E402,F401
import tf_models  # noqa: E402,F401

from .api import ConversionResult, convert  # noqa: E402
from .errors import ConversionError, ParityError  # noqa: E402
from .zoo import ZOO, Entry, find_entry, get_entry  # noqa: E402

__all__ = ["convert", "ConversionResult", "ConversionError", "ParityError", "ZOO", "Entry",
           "find_entry", "get_entry", "__version__"]
