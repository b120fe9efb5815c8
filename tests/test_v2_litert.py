"""``--litert`` on VideoMAE V2: a fine-tuned (distilled, mapped-head) ViT-g-shaped ``Tg`` entry
writes a checked ``.tflite`` like V1's; a pre-trained one is refused in one line, as V1's is;
every V2 option (patch 14, mlp_ratio 48/11, layer scale, cosine attention, no mean pooling)
runs in LiteRT as in Keras. Every tensor random."""

import os

import numpy as np
import pytest

from conftest import TINY_V2_MAPPED, assert_one_line_error, run_cli

TOLERANCE = 1e-5
TINY_V2_PT = "TFVideoMAEv2_Tg_Hybrid_4x28_PT"


@pytest.mark.slow  # fast tier: every V2 option through the same writer (below) and V1's
# checked .tflite (test_litert::test_cli_litert_writes_a_checked_tflite_and_skips_it_next_time)
def test_litert_writes_a_checked_tflite_for_a_v2_entry(tmp_path):
    """The mapped-head entry converted with ``litert=True`` (the CLI's --litert is driven by
    test_litert on V1)."""
    import converter
    from converter.record import ConversionRecord

    result = converter.convert(TINY_V2_MAPPED, str(tmp_path), synthetic=True, seed=0,
                               progress=False, parity_batch=1, litert=True)
    assert os.path.isfile(result.paths["litert"])
    record = ConversionRecord.load(result.paths["report"])
    check = record.reload_checks["litert"]
    # every parity clip through the reloaded .tflite, against float64 and torch fp32
    assert check.passed and check.method == "outputs"
    assert check.tf_err_vs_f64 <= TOLERANCE and "litert" in record.artifacts


def test_cli_litert_refuses_a_v2_pretrained_entry_before_any_work(tmp_path):
    out = tmp_path / "weights"
    result = run_cli(["--name", TINY_V2_PT, "--synthetic", "--out", str(out), "--litert", "-q"])
    line = assert_one_line_error(result, 2)
    assert "--litert" in line and "pre-trained" in line and "mask" in line
    assert not out.exists() or not any(out.iterdir())
    # as for V1: its encoder (--encoder-only) is served, features in, no mask
    from converter.kinds import kind_of
    from converter.zoo import get_entry

    assert kind_of(get_entry(TINY_V2_PT).encoder_variant()).serves_litert


@pytest.mark.parametrize("options", [
    dict(init_values=0.1, cos_attn=True, use_mean_pooling=False),
    dict(init_values=0.1, cos_attn=True),
    dict(cos_attn=True),  # folds alone too (its logit scale)
    dict()])  # ViT-g's own shape (patch 14, mlp_ratio 48/11): no weight folded
def test_every_v2_option_runs_in_litert_as_in_keras(options, tmp_path):
    """Layer scale and cosine attention each make the converter fold a weight into a computed
    constant: the file is then the plain conversion; without them the weights are written
    over the stand-ins (``export_litert``), and the file computes the same."""
    import keras

    import torch_reference
    from converter.litert import export_litert, make_interpreter, run_litert
    from converter.mapping import map_tensors, prepare_state_dict
    from converter.synthetic import random_state_dict
    from converter.zoo import get_entry
    from tf_models import VideoMAEVideoClassifier

    entry = get_entry("TFVideoMAEv2_Tg_K710_4x28_FT")
    config = {**entry.model_config(), "num_classes": 7, **options}
    torch_model = torch_reference.VisionTransformer(**config)
    state = random_state_dict(torch_model, seed=2)
    model = VideoMAEVideoClassifier(**config)
    map_tensors(prepare_state_dict(state), model.named_variables(), "test")
    path = str(tmp_path / "v2.tflite")
    folds = bool(options.get("init_values") or options.get("cos_attn"))
    assert export_litert(model, entry, path) is not folds  # True: written over the stand-ins
    clip = np.random.default_rng(3).standard_normal((3, 4, 28, 28, 3), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(model(clip))
    assert float(np.std(expected)) > 1e-2  # logits that tell classes apart
    (found,) = run_litert(make_interpreter(path), clip)
    assert found.shape == (3, 7)
    assert float(np.max(np.abs(found - expected))) <= TOLERANCE
    assert os.path.getsize(path) > 4 * sum(int(np.prod(v.shape)) for v in model.weights) * 0.9
