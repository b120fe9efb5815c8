"""The peer environment's own baseline: a process that only imports what ``peer_convert``
imports. Prints {}."""

import litert_torch  # noqa: F401
import timm  # noqa: F401  (as peer_convert: upstream's modeling files import it)
import torch  # noqa: F401
import torch_reference  # noqa: F401

if __name__ == "__main__":
    print("{}")
