"""The import baseline: a process that only imports what a conversion imports. Prints {}."""

import converter  # noqa: F401
import keras  # noqa: F401
import tensorflow  # noqa: F401
import torch  # noqa: F401

if __name__ == "__main__":
    print("{}")
