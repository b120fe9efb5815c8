"""Where each zoo entry's upstream file comes from, and the zoo's listing (``--list``).

Stdlib only and importing nothing of the library (as ``cli_options.py``): the
``videomae-convert`` console script loads this file on its own
(``videomae_cli.quiet.load_stdlib_leaf``), so ``--list`` answers before torch and TensorFlow
start; the zoo table (``tf_models.presets``) comes in as an argument. ``zoo.py`` builds each
``Entry`` from ``upstream_file``.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

# Upstream files per (family, size, dataset): (PT drive id, FT drive id, PT hub id, FT hub id).
# Drive ids from upstream MODEL_ZOO.md; hub ids of the transformers-format copies.
UPSTREAM_FILES: Dict[Tuple[str, str, str], tuple] = {
    ("v1", "S", "k400"): ("1nU-H1u3eJ-VuyCveU7v-WIOcAVxs5Hww", "1ygjLRm1kvs9mwGsP3lLxUExhRo6TWnrx",
                          None, "MCG-NJU/videomae-small-finetuned-kinetics"),
    ("v1", "B", "k400"): ("1tEhLyskjb755TJ65ptsrafUG2llSwQE1", "1MzwteHH-1yuMnFb8vRBQDvngV1Zl-d3z",
                          "MCG-NJU/videomae-base", "MCG-NJU/videomae-base-finetuned-kinetics"),
    ("v1", "L", "k400"): ("1qLOXWb_MGEvaI7tvuAe94CV7S2HXRwT3", "1jX1CiqxSkCfc94y8FRW1YGHy-GNvHCuD",
                          "MCG-NJU/videomae-large", "MCG-NJU/videomae-large-finetuned-kinetics"),
    ("v1", "H", "k400"): ("1AJQR1Rsi2N1pDn9tLyJ8DQrUREiBA1bO", "104ouJZxSVPSAm0LwJXd6IzjdA_RGLqZi",
                          None, "MCG-NJU/videomae-huge-finetuned-kinetics"),
    ("v1", "S", "ssv2"): ("1p_I1aaONOeUvRmRQw1UT3-L2H8XJClHu", "1ajlMrT06jiiM-5YjNI2X_UFyzsuYbbtZ",
                          None, "MCG-NJU/videomae-small-finetuned-ssv2"),
    ("v1", "B", "ssv2"): ("1I18dY_7rSalGL8fPWV82c0-foRUDzJJk", "1dt_59tBIyzdZd5Ecr22lTtzs_64MOZkT",
                          "MCG-NJU/videomae-base-ssv2", "MCG-NJU/videomae-base-finetuned-ssv2"),
    ("v1", "B", "ucf101"): ("1BHev4meNgKM0o_8DMRbuzAsKSP3IpQ3o",
                            "1MSyon6fPpKz7oqD6WDGPFK4k_Rbyb6fw", None, None),
}

_GDRIVE = "https://drive.google.com/uc?export=download&id={}"

# VideoMAE V2 files (its docs/MODEL_ZOO.md), per (size, recipe, stage, dataset of the head in
# the file): the distilled ones have direct links on the Hub; the ViT-g ones are shown only
# after upstream's download request form, so they are named by upstream's run (config) name
# and converted from a local file. A mapped-head entry converts its source entry's file.
_V2_HUB = "https://huggingface.co/OpenGVLab/VideoMAE2/resolve/main/distill/{}"
V2_REQUEST_FORM = ("https://docs.google.com/forms/d/e/1FAIpQLSd1SjKMtD8piL9uxGEUwicerxd46bs12"
                   "QojQt92rzalnoI3JA/viewform")
V2_FILES: Dict[Tuple[str, str, Optional[str], str], str] = {
    ("S", "DL", None, "k710"): _V2_HUB.format("vit_s_k710_dl_from_giant.pth"),
    ("B", "DL", None, "k710"): _V2_HUB.format("vit_b_k710_dl_from_giant.pth"),
    ("g", "PT", None, "hybrid"): "vit_g_hybrid_pt_1200e",
    ("g", "FT", None, "k710"): "vit_g_hybrid_pt_1200e_k710_ft",
    ("g", "FT", None, "k400"): "vit_g_hybrid_pt_1200e_k400_ft",
    ("g", "FT", "k710", "k400"): "vit_g_hybrid_pt_1200e_k710_it_k400_ft",
    ("g", "FT", "k710", "k600"): "vit_g_hybrid_pt_1200e_k710_it_k600_ft",
    ("g", "FT", None, "ssv2"): "vit_g_hybrid_pt_1200e_ssv2_ft",
    ("g", "FT", "k710", "ucf101"): "vit_g_hybrid_pt_1200e_k710_it_ucf101_ft",
    ("g", "FT", "k710", "hmdb51"): "vit_g_hybrid_pt_1200e_k710_it_hmdb51_ft",
}


def upstream_file(preset) -> dict:
    """A preset's upstream file: ``gdrive_id``, ``hub_id`` (a transformers-format copy),
    ``url`` (a direct link) and ``upstream_run`` (the run name of a file upstream shares
    without a link), each None where there is none."""
    if preset.family == "v2":
        found = V2_FILES.get((preset.size, preset.recipe, preset.stage,
                              preset.head_from or preset.dataset))
        linked = found is not None and found.startswith("https://")
        return dict(gdrive_id=None, hub_id=None, url=found if linked else None,
                    upstream_run=None if linked else found)
    pt_drive, ft_drive, pt_hub, ft_hub = UPSTREAM_FILES.get(
        (preset.family, preset.size, preset.dataset), (None, None, None, None))
    pretrained = preset.mode == "PT"
    return dict(gdrive_id=pt_drive if pretrained else ft_drive,
                hub_id=pt_hub if pretrained else ft_hub, url=None, upstream_run=None)


def source_url(gdrive_id: Optional[str], url: Optional[str]) -> Optional[str]:
    """Where an upstream file downloads from, or None (a local file is needed)."""
    return _GDRIVE.format(gdrive_id) if gdrive_id else url


def listing(presets, as_json: bool) -> List[str]:
    """``videomae-convert --list``: one line per published entry of ``presets`` (the
    ``tf_models.presets`` module), a table row or (``as_json``) its JSON object."""
    lines = []
    for preset in presets.PRESETS.values():
        info = preset.listing()
        if as_json:
            lines.append(json.dumps(info))
            continue
        files = upstream_file(preset)
        source = source_url(files["gdrive_id"], files["url"]) or files["upstream_run"] or ""
        accuracy = "-" if info["top1"] is None else f"{info['top1']}/{info['top5'] or '-'}"
        lines.append(f"{preset.name:38s} {info['family']} {info['recipe']} "
                     f"{info['views'] or '-':8s} {accuracy:11s} {source}")
    return lines
