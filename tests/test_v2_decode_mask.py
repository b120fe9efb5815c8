"""VideoMAE V2's decode mask through the converter: the parity cases of a V2 pre-trained entry
add upstream's running-cell decode masks and random ones, proven per block against the
float64 reference; the SavedModel serves them by a second signature (``dual_masking``), the
``.keras`` model by its optional input, and the reload checks run both paths. On the tiny
ViT-g-shaped ``Tg`` entry, every tensor random."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import converter
from converter.checkpoint import read_checkpoint
from converter.errors import ParityError
from converter.kinds import (DUAL_MASKING_SIGNATURE, build_tf_model, build_torch_model, kind_of,
                             parity_reference)
from converter.mapping import map_tensors, prepare_state_dict
from converter.parity import check_parity, compute_reference, make_cases
from converter.synthetic import random_state_dict, synthetic_path, write_synthetic_checkpoint
from converter.zoo import get_entry
from torch_reference import running_cell_mask

TINY_V2_PT = "TFVideoMAEv2_Tg_Hybrid_4x28_PT"
TINY_V1_PT = "TFVideoMAE_T_K400_4x32_PT"
TOLERANCE = 1e-5
# upstream's RunningCellMaskingGenerator((2, 2, 2), 0.5).all_mask_maps, flattened: its four
# cells (dataset/masking_generator.py, run in a scratch copy of OpenGVLab/VideoMAEv2)
UPSTREAM_CELLS_2x2x2 = {(1, 0, 0, 1, 0, 0, 1, 1), (0, 0, 1, 1, 0, 1, 1, 0),
                        (0, 1, 1, 0, 1, 1, 0, 0), (1, 1, 0, 0, 1, 0, 0, 1)}


def test_running_cell_masks_are_upstreams_cells():
    rows = running_cell_mask(4, 28, 14, 2, 0.5, 64, np.random.default_rng(0))
    assert {tuple(int(v) for v in row) for row in rows} == UPSTREAM_CELLS_2x2x2
    # ViT-g's grid: half of every slot decoded, shifted one place per slot
    g = running_cell_mask(16, 224, 14, 2, 0.5, 3, np.random.default_rng(1))
    slots = g.reshape(3, 8, 16 * 16)
    assert (slots.sum(axis=2) == 128).all()
    assert not (slots[:, 0] == slots[:, 1]).all()
    with pytest.raises(ValueError, match="even patch grid"):
        running_cell_mask(4, 42, 14, 2, 0.5)


def test_v2_pretrained_parity_cases_add_running_cell_and_random_decode_masks():
    entry = get_entry(TINY_V2_PT)
    cases = make_cases(entry, batch=2, seed=0)
    assert [c.name for c in cases] == ["mask0.9", "mask0.5", "mask0.9-runcell0.5",
                                       "mask0.9-decode0.5"]
    assert cases[0].decode_mask is None and cases[1].decode_mask is None
    for case in cases[2:]:
        assert (case.mask == cases[0].mask).all()
        kept = (~case.decode_mask).sum(axis=1)
        assert (kept == entry.num_patches // 2).all()  # the same count in every row
        # the decoder also predicts tokens the encoder saw, as upstream's running cells do
        assert (~case.decode_mask & ~case.mask).any()
        assert [c.name for c in case.samples()] == [case.name] * 2
        assert case.samples()[1].decode_mask.shape == (1, entry.num_patches)
    assert {tuple(map(int, row)) for row in cases[2].decode_mask} <= UPSTREAM_CELLS_2x2x2
    # V1's pre-trainer takes no decode mask: its cases and its one signature are unchanged
    v1 = get_entry(TINY_V1_PT)
    assert [c.name for c in make_cases(v1)] == ["mask0.9", "mask0.5"]
    assert kind_of(v1).signatures() == {"serving_default": ("video", "mask")}
    assert kind_of(entry).signatures() == {"serving_default": ("video", "mask"),
                                           DUAL_MASKING_SIGNATURE: ("video", "mask",
                                                                    "decode_mask")}


def _tiny_pair(entry, seed=3):
    torch_model = build_torch_model(entry)
    state = random_state_dict(torch_model, seed)
    torch_model.load_state_dict(state, strict=True)
    tf_model = build_tf_model(entry)
    map_tensors(prepare_state_dict(state), tf_model.named_variables(), "test")
    return torch_model, tf_model


def test_a_misplaced_decode_mask_fails_parity_on_the_decode_mask_cases_only():
    """The decode-mask cases can fail: a Keras side that decodes other tokens (the same
    count, shifted by one position) passes the tube-mask cases and fails both decode-mask
    cases at the first decoder block."""
    import keras

    entry = get_entry(TINY_V2_PT)
    torch_model, tf_model = _tiny_pair(entry)
    references = compute_reference(parity_reference(entry, torch_model), make_cases(entry))
    parts = kind_of(entry).block_layout(entry)

    def runner(shift):
        def run(case):
            decode = None if case.decode_mask is None else np.roll(case.decode_mask, shift, 1)
            out, hidden = tf_model.call_with_hidden_states(case.video_nthwc, case.mask, decode)
            return ({"pixels": keras.ops.convert_to_numpy(out)},
                    [keras.ops.convert_to_numpy(h) for h in hidden])
        return run

    good = check_parity(runner(0), references, TOLERANCE, parts)
    assert good.passed, good.summary()
    assert {b.case for b in good.blocks} == {c.case.name for c in references}
    bad = check_parity(runner(1), references, TOLERANCE, parts)
    failed = {o.case for o in bad.outputs if not o.passed}
    assert failed == {"mask0.9-runcell0.5", "mask0.9-decode0.5"}
    assert bad.first_divergent_block == "decoder.blocks.0 (mask0.9-runcell0.5)"


@pytest.fixture(scope="module")
def v2_pt_converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("v2_pt")
    return converter.convert(TINY_V2_PT, str(out), synthetic=True, seed=0, progress=False)


def test_v2_pretrained_conversion_proves_the_decode_mask_path(v2_pt_converted):
    result = v2_pt_converted
    cases = ["mask0.9", "mask0.5", "mask0.9-runcell0.5", "mask0.9-decode0.5"]
    assert result.parity.passed and result.report.parity_inputs.cases == cases
    assert {o.case for o in result.parity.outputs} == set(cases)
    # per block with the float64-scaled limits, every case: 2 encoder + 1 decoder blocks
    assert [b.case for b in result.parity.blocks] == [c for c in cases for _ in range(3)]
    checks = result.report.reload_checks
    assert checks["savedmodel"].passed and checks["savedmodel"].method == "outputs"
    # the .keras: class, config, variables (its rebuild, decode mask included, is proven
    # by tests/test_keras_rebuild.py)
    assert checks["keras"].method == "variables" and checks["keras"].clips == 0
    with open(result.paths["report"]) as handle:
        assert set(json.load(handle)["reference_fingerprint"]) == set(cases)


def test_v2_pretrained_artifacts_serve_a_decode_mask_like_upstream(v2_pt_converted, tmp_path):
    """A new clip, tube mask and running-cell decode mask through the SavedModel's
    ``dual_masking`` signature and the reloaded ``.keras`` model, against upstream's model
    loaded strictly from the regenerated synthetic file."""
    import keras
    import tensorflow as tf

    entry = get_entry(TINY_V2_PT)
    loaded = tf.saved_model.load(v2_pt_converted.paths["savedmodel"])
    default = loaded.signatures["serving_default"].structured_input_signature[1]
    dual = loaded.signatures[DUAL_MASKING_SIGNATURE]
    inputs = dual.structured_input_signature[1]
    assert set(default) == {"video", "mask"}
    assert set(inputs) == {"video", "mask", "decode_mask"}
    assert inputs["decode_mask"].dtype == tf.bool and inputs["decode_mask"].shape[0] is None
    rng = np.random.default_rng(9)
    video = rng.standard_normal((3, 4, 28, 28, 3), dtype=np.float32)
    mask = make_cases(entry, batch=3, seed=9)[0].mask
    decode = running_cell_mask(4, 28, 14, 2, 0.5, 3, rng)
    path = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, str(tmp_path)), 0)
    torch_model = build_torch_model(entry)
    torch_model.load_state_dict(read_checkpoint(path).state_dict, strict=True)
    with torch.inference_mode():
        expected = torch_model(torch.from_numpy(np.ascontiguousarray(
            video.transpose(0, 4, 1, 2, 3))), torch.from_numpy(mask),
            torch.from_numpy(decode)).numpy()
    assert expected.shape == (3, 4, entry.pixels_per_patch)
    served = dual(video=tf.constant(video), mask=tf.constant(mask),
                  decode_mask=tf.constant(decode))["pixels"].numpy()
    model = keras.saving.load_model(v2_pt_converted.paths["keras"], compile=False)
    found = keras.ops.convert_to_numpy(model({"video": video, "mask": mask,
                                              "decode_mask": decode}))
    for output in (served, found):
        assert output.shape == expected.shape
        assert float(np.max(np.abs(output - expected))) <= TOLERANCE


def test_a_savedmodel_without_the_dual_masking_signature_fails_its_reload_check(tmp_path):
    from converter.proofs import reload_savedmodel
    from converter.writers import export_savedmodel

    entry = get_entry(TINY_V2_PT)
    as_v1 = dataclasses.replace(entry, preset=dataclasses.replace(entry.preset, family="v1"))
    path = str(tmp_path / "sm")
    export_savedmodel(build_tf_model(entry), as_v1, path)  # serving_default only
    with pytest.raises(ParityError, match=f"no {DUAL_MASKING_SIGNATURE} signature"):
        reload_savedmodel(entry, path)


def test_v2_pretrained_card_says_how_to_pass_a_decode_mask():
    card = kind_of(get_entry(TINY_V2_PT)).card(get_entry(TINY_V2_PT))
    text = "\n".join(card.contract)
    assert "`decode_mask`" in text and DUAL_MASKING_SIGNATURE in text
    assert "running-cell masking at ratio 0.5" in text
    assert "decode_mask" not in "\n".join(kind_of(get_entry(TINY_V1_PT)).card(
        get_entry(TINY_V1_PT)).contract)
