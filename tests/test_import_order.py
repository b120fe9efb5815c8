"""Import order: triton's native library (loaded by ``torch._dynamo``, which torchvision and so
timm import) kills the process when it loads after TensorFlow's (README "Import order").
``import converter`` loads none of them, and marks triton absent, so a process may import
tensorflow, then converter, then timm, and use all three."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT, TINY_FT

TORCH_EXTRAS = ("timm", "torchvision", "triton", "torch._dynamo")

_CHILD = f"""
import json, sys
import tensorflow
import converter
loaded = sorted(m for m in {TORCH_EXTRAS!r} if sys.modules.get(m) is not None)
import timm, torch
import torch_reference.timm_registry
model = timm.create_model("videomae_vit_small_patch16_224", num_classes=3, depth=1,
                          num_frames=2, img_size=32)
out = model(torch.randn(1, 3, 2, 32, 32))
print(json.dumps({{"loaded_by_converter": loaded, "shape": list(out.shape),
                  "torchvision": "torchvision" in sys.modules}}))
"""


def _run_child(code, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_tensorflow_then_converter_then_timm_work_in_one_process():
    done = _run_child(_CHILD)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # -11: it crashed
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["loaded_by_converter"] == []  # a conversion pays for none of them
    assert found["torchvision"]  # timm did load torchvision, after TensorFlow
    assert found["shape"] == [1, 3]


# timm, torchvision and triton as if not installed (they are not install_requires: setup.cfg's
# ``timm`` and ``test`` extras bring them): None in sys.modules makes their import fail and
# find_spec answer None, as for a missing package.
_WITHOUT = f"""
import json, sys
for name in ("timm", "torchvision", "triton"):
    sys.modules[name] = None
import converter
result = converter.convert({TINY_FT!r}, sys.argv[1], synthetic=True, progress=False)
print(json.dumps({{"passed": result.parity.passed, "paths": sorted(result.paths)}}))
"""


def test_a_conversion_needs_neither_timm_nor_torchvision(tmp_path):
    done = _run_child(_WITHOUT, str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"passed": True, "paths": ["keras", "report", "savedmodel", "weights"]}

