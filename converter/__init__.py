"""videomae-convert: official PyTorch VideoMAE checkpoints -> checked TensorFlow / Keras models.

Import order matters in one process: torchvision (imported by timm) segfaults when loaded after
tensorflow (its ``torch._dynamo`` loads triton's native library; README "Import order"), so
this package imports the torch side first. Import ``converter`` before
``tensorflow``/``keras``/``tf_models``.
"""

import sys

__version__ = "0.1.0"

if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
    raise ImportError(
        "import converter (or torch / timm) before tensorflow or keras: loading torchvision "
        "after tensorflow crashes the process with the current wheels")

import torch_reference  # noqa: E402,F401  (torch, timm, torchvision: before tensorflow)
import tf_models  # noqa: E402,F401

from .api import ConversionResult, convert  # noqa: E402
from .errors import ConversionError, ParityError  # noqa: E402
from .zoo import ZOO, Entry, find_entry, get_entry  # noqa: E402

__all__ = ["convert", "ConversionResult", "ConversionError", "ParityError", "ZOO", "Entry",
           "find_entry", "get_entry", "__version__"]
