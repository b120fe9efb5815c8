"""VideoMAE V2 zoo names as V1's are used: ``from_preset`` through a release served on a
loopback HTTP server (SHA256-verified), ``videomae-predict`` and ``videomae-evaluate`` on the
real videos the test extra ships, with each entry's class names (K710 for a K710 head, K400
for a mapped head, HMDB51) and test sampling (HMDB51 every 2nd frame). As V1's tests do, the
tiny entries (``Tg``, shaped like ViT-g) are converted, released and served under their own
zoo names; every tensor random."""

import torch  # noqa: F401
from torch_reference.video_pipeline import upstream_merge, upstream_test_views

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from converter.checkpoint import read_checkpoint  # noqa: E402
from converter.kinds import build_torch_model  # noqa: E402
from converter.synthetic import synthetic_path, write_synthetic_checkpoint  # noqa: E402
from converter.zoo import get_entry  # noqa: E402

from conftest import TINY_V2_HMDB51, TINY_V2_K710, TINY_V2_MAPPED  # noqa: E402
from http_faults import FaultServer  # noqa: E402
from video_helpers import make_video_cases  # noqa: E402

K710, MAPPED, HMDB51 = TINY_V2_K710, TINY_V2_MAPPED, TINY_V2_HMDB51
LOGIT_ATOL = 1e-4
CASES = ("landscape", "lowres_carphone", "short")  # the two shipped files, a cut


@pytest.fixture
def zoo(tiny_v2_release, tmp_path, monkeypatch):
    """The session's V2 release (conftest.tiny_v2_release: the three tiny V2 classifiers,
    converted and built as scripts/release.py does) on 127.0.0.1, VIDEOMAE_ZOO_URL pointing
    at it, an empty cache."""
    served = str(tmp_path / "served")
    shutil.copytree(tiny_v2_release[0], served)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VIDEOMAE_OFFLINE", raising=False)
    with FaultServer(served) as server:
        monkeypatch.setenv("VIDEOMAE_ZOO_URL", server.url("").rstrip("/"))
        server.cache = str(tmp_path / "cache")
        yield server


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_video_cases(tmp_path_factory.mktemp("v2_videos"))


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """{name: the torch model the entry's artifacts must match}: upstream's model loaded
    strictly from the regenerated synthetic file; for the mapped entry, the K710 model with
    its logits taken at upstream's label_710to400 rows."""
    from tf_models.video.labels import head_rows

    folder = str(tmp_path_factory.mktemp("v2_checkpoints"))
    found = {}
    for name in (K710, MAPPED, HMDB51):
        entry = get_entry(name).upstream
        path = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, folder), 0)
        model = build_torch_model(entry)
        model.load_state_dict(read_checkpoint(path).state_dict, strict=True)
        rows = list(head_rows("k710", "k400")) if name == MAPPED else None
        found[name] = (model, rows)
    return found


def _torch_logits(references, name, views_ncthw):
    model, rows = references[name]
    with torch.inference_mode():
        logits = model(views_ncthw).numpy()
    return logits if rows is None else logits[:, rows]


def test_from_preset_loads_a_v2_zoo_name_verified_from_the_release(zoo, references):
    import tf_models

    model = tf_models.VideoMAEVideoClassifier.from_preset(MAPPED, progress=False)
    assert model.preset.name == MAPPED and model.preset.num_classes == 400
    assert model.preset.head_from == "k710"
    clip = np.random.default_rng(3).standard_normal((2, 4, 28, 28, 3), dtype=np.float32)
    expected = _torch_logits(references, MAPPED,
                             torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3))))
    assert float(np.max(np.abs(np.asarray(model(clip)) - expected))) <= 1e-5
    cached = [n for _, _, files in os.walk(zoo.cache) for n in files]
    assert f"{MAPPED}.weights.h5" in cached
    # a byte off in the asset: refused by its SHA256, nothing cached
    shutil.rmtree(zoo.cache)
    zoo.plan("ok", "ok", "corrupt")  # SHA256SUMS, manifest.json, the weights
    with pytest.raises(tf_models.PresetError, match=f"{K710}.weights.h5: sha256"):
        tf_models.VideoMAEVideoClassifier.from_preset(K710, progress=False)


def _predict(names, model):
    from videomae_cli.video import predict_command

    result = CliRunner().invoke(predict_command, list(names) + ["--model", model, "--json",
                                                                "--top-k", "3"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("name, dataset, classes", [(K710, "k710", 710), (MAPPED, "k400", 400),
                                                    (HMDB51, "hmdb51", 51)])
def test_predict_with_a_v2_zoo_name_uses_its_classes_and_sampling(zoo, videos, references,
                                                                  name, dataset, classes):
    from tf_models.video import class_names

    labels = class_names(dataset)
    assert len(labels) == classes
    records = _predict([videos[c] for c in CASES], name)
    for record, case in zip(records, CASES):
        assert record["model"] == name and record["views"] == "5x3"
        assert len(record["probs"]) == classes and len(record["view_logits"]) == 15
        assert [row["label"] for row in record["top_k"]] == \
            [labels[row["index"]] for row in record["top_k"]]
        _, normalised = upstream_test_views(videos[case], dataset, clip_len=4,
                                            short_side_size=28)
        expected = _torch_logits(references, name, normalised)
        error = float(np.max(np.abs(np.asarray(record["view_logits"]) - expected)))
        assert error <= LOGIT_ATOL, f"{case}: max abs {error:.2e}"
        probs = torch.softmax(torch.from_numpy(expected).double(), -1).mean(0).numpy()
        assert [row["index"] for row in record["top_k"]] == list(np.argsort(-probs)[:3])


def test_hmdb51_views_are_sampled_every_second_frame(videos):
    """HMDB51's sampling rate (2) is what the video tools use, and it matters: the same
    video's views differ from those at K400's rate (4), so the predict test above, whose
    reference samples every 2nd frame, would fail at rate 4."""
    from tf_models.video.protocol import protocol_for

    assert protocol_for("hmdb51", 4, 28).sample_rate == 2
    assert protocol_for("k710", 4, 28).sample_rate == 4
    raw_hmdb, _ = upstream_test_views(videos["landscape"], "hmdb51", clip_len=4,
                                      short_side_size=28)
    raw_k400, _ = upstream_test_views(videos["landscape"], "k400", clip_len=4,
                                      short_side_size=28)
    assert raw_hmdb.shape == raw_k400.shape and not (raw_hmdb == raw_k400).all()


def test_evaluate_with_a_v2_zoo_name_scores_hmdb51_as_upstream(zoo, videos, references,
                                                               tmp_path):
    """videomae-evaluate --model NAME on a labelled list of real videos: upstream's merge of
    the reference's logits (HMDB51 views, every 2nd frame), per-class names HMDB51's."""
    from tf_models.video import class_names
    from videomae_cli.video import evaluate_command

    root = tmp_path / "hmdb"
    lines, rows = [], []
    for number, case in enumerate(CASES):
        name = f"clips/{case}_{number}.mp4"
        os.makedirs(root / "clips", exist_ok=True)
        os.symlink(videos[case], root / name)
        _, normalised = upstream_test_views(videos[case], "hmdb51", clip_len=4,
                                            short_side_size=28)
        logits = _torch_logits(references, HMDB51, normalised)
        ranked = np.argsort(-torch.softmax(torch.from_numpy(logits).double(), -1)
                            .mean(0).numpy())
        label = int([ranked[0], ranked[4], ranked[5]][number % 3])  # top-5's last, first miss
        lines.append(f"{name} {label}")
        order = [(chunk, split) for chunk in range(5) for split in range(3)]
        rows += [(name, view, label, chunk, split) for view, (chunk, split) in zip(logits, order)]
    (root / "test.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(evaluate_command, [
        "--model", HMDB51, "--list", str(root / "test.csv"), "--root", str(root),
        "--out", str(tmp_path / "eval"), "--json", "-q", "--workers", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    top1, top5 = upstream_merge(rows)
    assert 0 < top1 < top5 < 100
    assert summary["top1"] == pytest.approx(top1, abs=1e-9)
    assert summary["top5"] == pytest.approx(top5, abs=1e-9)
    assert (summary["model"], summary["views"], summary["videos"]) == (HMDB51, "5x3", 3)
    assert set(summary["per_class"]) <= set(class_names("hmdb51"))


def test_a_distilled_entrys_card_and_zoo_row_say_distilled_not_fine_tuned(tiny_v2_release):
    """A DL entry's card opened "VideoMAE V2 ... fine-tuned classifier" above its own "distilled
    from the ViT-g Kinetics-710 model", and MODEL_ZOO.md's Mode said FT where
    ``videomae-convert --list`` says DL; a fine-tuned entry keeps its words. The release still
    verifies (cards and MODEL_ZOO.md are re-rendered the same way)."""
    from converter.release import verify_release

    release_dir = tiny_v2_release[0]

    def read(name):
        with open(os.path.join(release_dir, name), encoding="utf-8") as f:
            return f.read()

    for name in (K710, MAPPED):
        first = read(f"{name}.md").splitlines()[2]
        assert " distilled classifier on " in first and "fine-tuned" not in first, first
    assert " fine-tuned classifier on " in read(f"{HMDB51}.md").splitlines()[2]
    rows = {line.split("](")[0][3:]: line.split(" | ")[1]
            for line in read("MODEL_ZOO.md").splitlines() if line.startswith("| [")}
    assert rows == {K710: "DL", MAPPED: "DL", HMDB51: "FT"}
    assert verify_release(release_dir) == []


def test_model_cards_say_each_entrys_test_sampling_rate(tiny_v2_release):
    """HMDB51's clips take every 2nd frame (V2's script), Kinetics' every 4th: the card says
    which, as the README's zoo table does (a 16x5x3 alone would read as rate 4)."""
    release_dir = tiny_v2_release[0]

    def card(name):
        with open(os.path.join(release_dir, f"{name}.md"), encoding="utf-8") as f:
            return f.read()

    assert ("Evaluation views upstream: 4x5x3 (5 clips of 4 frames, every 2nd frame, x 3 "
            "crops).") in card(HMDB51)
    assert ("Evaluation views upstream: 4x5x3 (5 clips of 4 frames, every 4th frame, x 3 "
            "crops).") in card(MAPPED)
