"""Fine-tuning on a labelled list of videos as upstream does (``videomae-finetune``).

``sampling`` (train-time frame choice, keyed random streams), ``augment`` and ``randaugment``
(the clip recipe), ``data`` (list -> global batches, decoded in threads), ``schedule``
(warm-up + cosine), ``checkpoint`` (atomic, resumable), ``devices`` (Keras distribution /
MirroredStrategy), ``loop`` (``finetune``). torch-free; numpy / OpenCV / PyAV until the loop.
"""

from .augment import RECIPE
from .checkpoint import CheckpointError
from .data import TrainDataError, TrainSet
from .devices import DeviceError
from .loop import FinetuneConfig, FinetuneError, FinetuneResult, finetune

__all__ = ["RECIPE", "TrainSet", "TrainDataError", "CheckpointError", "DeviceError",
           "FinetuneConfig", "FinetuneError", "FinetuneResult", "finetune"]
