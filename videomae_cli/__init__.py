"""Command lines for converted models: ``videomae-predict`` and ``videomae-evaluate``.

This package imports nothing heavy at import time, so the commands can keep TensorFlow's
start-up noise off the terminal (see ``quiet``) before TensorFlow is first imported.
"""
