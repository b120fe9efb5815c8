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


def test_base_fine_tuned_conversion_matches_torch_in_a_fresh_process(tmp_path,
                                                                     check_fresh_process):
    entry = find_entry("B", "FT", "k400")
    result = converter.convert(entry, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    _assert_passed(result, entry)
    check_fresh_process(result, entry, tmp_path)


@pytest.mark.parametrize("size", ["L", "H"])
def test_large_fine_tuned_conversion_passes_parity(tmp_path, size):
    entry = find_entry(size, "FT", "k400")
    result = converter.convert(entry, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    _assert_passed(result, entry)
