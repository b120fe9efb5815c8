"""Runs in the peer's environment (``bench_peer``): read the synthetic checkpoint, build
upstream's model, convert and export it with litert-torch. The imports and the load are in
the process wall, not in ``convert_s``.

    python scripts/children/peer_convert.py CONFIG_JSON CHECKPOINT OUT_TFLITE
"""

import json
import os
import sys
import time

import litert_torch
import timm  # noqa: F401  (upstream's modeling files import it: drop_path, register_model)
import torch
import torch_reference


def main(config_json: str, checkpoint: str, path: str) -> dict:
    config = json.loads(config_json)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["module"]
    with torch.device("meta"):
        model = torch_reference.VisionTransformer(**config)
    model.load_state_dict(state, strict=True, assign=True)
    del state
    sample = torch.randn(1, 3, config["num_frames"], config["img_size"], config["img_size"])
    started = time.perf_counter()
    edge = litert_torch.convert(model.eval(), (sample,))
    converted = time.perf_counter()
    edge.export(path + ".partial")
    os.replace(path + ".partial", path)
    done = time.perf_counter()
    return {"convert_s": converted - started, "export_s": done - converted,
            "convert_export_s": done - started, "bytes": os.path.getsize(path),
            "torch": torch.__version__, "litert_torch": litert_torch.__version__}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
