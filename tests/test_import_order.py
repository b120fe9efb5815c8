"""The import-order guard: torchvision (through timm) after tensorflow still segfaults with the
installed wheels (README "Import order"), so ``import converter`` after tensorflow must refuse
in one line instead of letting the process die."""

import os
import subprocess
import sys

from conftest import REPO_ROOT


def _child(code):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


def test_importing_converter_after_tensorflow_refuses_with_an_import_error():
    done = _child("import tensorflow\ntry:\n    import converter\n"
                  "except ImportError as error:\n    print('REFUSED', error)\n")
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # -11: it crashed
    assert done.stdout.startswith("REFUSED import converter (or torch / timm) before "
                                  "tensorflow"), done.stdout
    assert done.stdout.count("\n") == 1  # one line
