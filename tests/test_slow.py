"""Full-size fine-tuned conversions (slow tier: ``pytest --runslow`` or ``pytest -m slow``).

ViT-B: synthetic conversion, then every artifact loaded in a fresh process without torch and
compared with the torch reference. ViT-L and ViT-H: synthetic conversions pass parity at
their zoo tolerance (memory: ViT-H needs about 12 GB).
"""

import json

import torch  # noqa: F401  (torch side first)
import converter
from converter.zoo import find_entry

import pytest  # noqa: E402

# full_size (one at a time, on one worker): ViT-B/L/H; the ViT-S backend tests run beside
# that queue (on the worker of ``small_converted``, whose conversion they share)
pytestmark = pytest.mark.slow


def _assert_passed(result, entry):
    parity = result.parity
    assert parity.passed, parity.summary()
    assert parity.tf_err_vs_f64 <= entry.parity_atol
    assert parity.first_divergent_block is None
    assert len(parity.blocks) == entry.dims["depth"] * len(parity.outputs)
    with open(result.paths["report"]) as handle:
        report = json.load(handle)
    assert report["parity"]["passed"] is True
    assert all(check["passed"] for check in report["reload_checks"].values())


@pytest.mark.full_size
def test_base_fine_tuned_conversion_matches_torch_in_a_fresh_process(tmp_path,
                                                                     check_fresh_process):
    entry = find_entry("B", "FT", "k400")
    result = converter.convert(entry, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    _assert_passed(result, entry)
    check_fresh_process(result, entry, tmp_path)


@pytest.mark.full_size
@pytest.mark.parametrize("size", ["L", "H"])
def test_large_fine_tuned_conversion_passes_parity(tmp_path, size):
    entry = find_entry(size, "FT", "k400")
    result = converter.convert(entry, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    _assert_passed(result, entry)


BACKEND_SCRIPT = """
import json, os, sys
import numpy as np
import keras
import tf_models
paths, config, clips, out = json.loads(sys.argv[1])
video = np.load(clips)
model = keras.saving.load_model(paths["keras"], compile=False)
np.save(os.path.join(out, "keras.npy"), model.predict(video, batch_size=1, verbose=0))
fresh = tf_models.VideoMAEVideoClassifier(**config)
fresh.load_weights(paths["weights"])
np.save(os.path.join(out, "weights.npy"), fresh.predict(video, batch_size=1, verbose=0))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_small_keras_files_agree_with_tensorflow_on_every_backend(small_converted, backend,
                                                                  tmp_path):
    """ViT-S ``.keras`` and ``.weights.h5`` on JAX / PyTorch within 1e-5 of the TensorFlow
    SavedModel on the conversion's own parity clips."""
    import os
    import subprocess
    import sys

    import numpy as np
    import tensorflow as tf

    from conftest import REPO_ROOT
    from converter.parity import make_cases

    entry = small_converted.entry
    clips = np.concatenate([c.video_nthwc for c in make_cases(entry, batch=2, seed=0)])
    np.save(tmp_path / "clips.npy", clips)
    serving = tf.saved_model.load(small_converted.paths["savedmodel"]).signatures[
        "serving_default"]
    expected = serving(video=tf.constant(clips))["logits"].numpy()
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO_ROOT)
    argument = json.dumps([small_converted.paths, entry.model_config(),
                           str(tmp_path / "clips.npy"), str(tmp_path)])
    done = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, argument], env=env,
                          capture_output=True, text=True, timeout=1200,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    for kind in ("keras", "weights"):
        found = np.load(tmp_path / f"{kind}.npy")
        error = float(np.max(np.abs(found - expected)))
        print(f"{backend} {kind}: max abs vs TensorFlow {error:.2e}")
        assert error <= 1e-5, (backend, kind, error)
