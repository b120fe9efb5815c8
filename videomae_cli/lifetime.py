"""The console scripts' process lifetime: ``tf_models/lifetime.py``, loaded on its own before
any framework (its package's ``__init__`` imports Keras). One copy per process: the console
script claims it, and the library's own import of ``tf_models.lifetime`` (for
``framework_child``) uses nothing of its state."""

from __future__ import annotations

from .quiet import load_stdlib_leaf

_lifetime = load_stdlib_leaf("tf_models.lifetime")
claim_process = _lifetime.claim_process
framework_imports = _lifetime.framework_imports
