"""tf_models.video.reconstruct: upstream's pixel-target convention, reconstructions, pictures,
clips; ``videomae-reconstruct`` runs where torch cannot be imported."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch  # the upstream reference side

from conftest import REPO_ROOT
from tf_models.video import reconstruct as R
from torch_reference.masking import tube_mask
from video_helpers import write_video

# small geometry keeps the tests fast; the functions take it as arguments
T, S, TUB, P = 4, 32, 2, 16          # 4 frames of 32x32 -> 2*2*2 = 8 tokens of 2x16x16
N, PIX = (T // TUB) * (S // P) ** 2, TUB * P * P


def _rng(seed=0):
    return np.random.default_rng(seed)


def _clip01(b=2, t=T, s=S, seed=0):
    return _rng(seed).random((b, t, s, s, 3), dtype=np.float32)


def _mask(b=2, ratio=0.5, seed=1):
    return tube_mask(num_frames=T, img_size=S, patch_size=P, tubelet_size=TUB,
                     mask_ratio=ratio, batch_size=b, rng=_rng(seed))


def _upstream_patchify_torch(video_bcthw, p0, p):
    """'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c' with reshape/permute only."""
    b, c, t, h, w = video_bcthw.shape
    x = video_bcthw.reshape(b, c, t // p0, p0, h // p, p, w // p, p)
    # axes: 0 b, 1 c, 2 t, 3 p0, 4 h, 5 p1, 6 w, 7 p2
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)
    return x.reshape(b, (t // p0) * (h // p) * (w // p), p0 * p * p, c)


def _upstream_targets_torch(video01_bthwc, p0, p):
    """engine_for_pretraining.py's normalised targets, written independently in torch."""
    x = torch.from_numpy(video01_bthwc).permute(0, 4, 1, 2, 3)  # -> b c t h w
    sq = _upstream_patchify_torch(x, p0, p)
    norm = (sq - sq.mean(dim=-2, keepdim=True)) / (
        sq.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return norm.reshape(norm.shape[0], norm.shape[1], -1).numpy()  # 'b n p c -> b n (p c)'


# --------------------------------------------------------------------------- patches

def test_patchify_unpatchify_round_trip_exact():
    video = _clip01()
    patches = R.patchify(video, TUB, P)
    assert patches.shape == (2, N, PIX, 3)
    back = R.unpatchify(patches, (T, S, S), TUB, P)
    assert back.dtype == video.dtype
    np.testing.assert_array_equal(back, video)
    # flattened (p c) patches are accepted too
    np.testing.assert_array_equal(R.unpatchify(patches.reshape(2, N, -1), (T, S, S), TUB, P),
                                  video)


def test_unpatchify_default_geometry_is_16x224():
    video = _clip01(b=1, t=16, s=224)
    patches = R.patchify(video)
    assert patches.shape == (1, 1568, 1536 // 3, 3)
    np.testing.assert_array_equal(R.unpatchify(patches), video)


def test_patchify_matches_upstream_rearrange():
    video = _clip01(b=2, t=4, s=48)
    ref = _upstream_patchify_torch(torch.from_numpy(video).permute(0, 4, 1, 2, 3), TUB, P)
    np.testing.assert_array_equal(R.patchify(video, TUB, P), ref.numpy())
    # token 0 is the top-left patch of frames 0-1; token 1 its right neighbour (w fastest)
    patches = R.patchify(video, TUB, P)
    np.testing.assert_array_equal(patches[0, 0].reshape(TUB, P, P, 3), video[0, 0:2, :16, :16])
    np.testing.assert_array_equal(patches[0, 1].reshape(TUB, P, P, 3),
                                  video[0, 0:2, :16, 16:32])
    np.testing.assert_array_equal(patches[0, 9].reshape(TUB, P, P, 3),
                                  video[0, 2:4, :16, :16])


def test_patchify_rejects_bad_shapes():
    with pytest.raises(ValueError):
        R.patchify(np.zeros((1, 3, 32, 32, 3)), TUB, P)
    with pytest.raises(ValueError):
        R.patchify(np.zeros((4, 32, 32, 3)), TUB, P)


def test_normalize_patches_matches_upstream_targets():
    video = _clip01()
    ours = R.normalize_patches(R.patchify(video, TUB, P))
    ref = _upstream_targets_torch(video, TUB, P)
    assert ours.shape == (2, N, PIX * 3)
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_normalize_then_denormalize_with_true_stats_returns_patches():
    video = _clip01()
    mask = np.ones((2, N), dtype=bool)  # every token masked: the predictor supplies it all
    oracle = R.normalize_patches(R.patchify(video, TUB, P))
    back = R.denormalize_predictions(oracle, video, mask, TUB, P)
    np.testing.assert_allclose(back, R.patchify(video, TUB, P), atol=1e-5)


def test_masked_targets_are_ascending_masked_tokens():
    video, mask = _clip01(), _mask()
    targets = R.masked_targets(video, mask, TUB, P)
    all_t = R.normalize_patches(R.patchify(video, TUB, P))
    for row in range(2):
        np.testing.assert_array_equal(targets[row], all_t[row, np.flatnonzero(mask[row])])
    assert R.masked_mse(targets, video, mask, TUB, P) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- reconstruct

def test_normalize_clip_round_trip():
    u8 = _rng(3).integers(0, 256, (T, S, S, 3), dtype=np.uint8)
    norm = R.normalize_clip(u8)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[..., 0], (u8[..., 0] / 255.0 - 0.485) / 0.229, atol=1e-5)
    np.testing.assert_allclose(R.denormalize_clip(norm), u8 / 255.0, atol=1e-6)
    np.testing.assert_allclose(R.normalize_clip(u8 / np.float32(255)), norm, atol=1e-6)


def test_reconstruct_with_oracle_predictions_is_the_original():
    video01, mask = _clip01(), _mask()
    video = R.normalize_clip(video01)
    oracle = R.masked_targets(R.denormalize_clip(video), mask, TUB, P)
    out = R.reconstruct(video, mask, oracle, TUB, P)
    assert set(out) == {"original", "masked", "reconstruction"}
    for v in out.values():
        assert v.shape == video01.shape and v.dtype == np.float32
        assert v.min() >= 0.0 and v.max() <= 1.0
    np.testing.assert_allclose(out["original"], video01, atol=1e-5)
    np.testing.assert_allclose(out["reconstruction"], out["original"], atol=1e-5)


def test_reconstruct_uses_predictions_in_masked_patches_only():
    video01, mask = _clip01(), _mask()
    video = R.normalize_clip(video01)
    n_masked = int(mask[0].sum())
    zeros = np.zeros((2, n_masked, PIX * 3), np.float32)  # predicts each patch's mean colour
    out = R.reconstruct(video, mask, zeros, TUB, P)
    rec = R.patchify(out["reconstruction"], TUB, P)
    orig = R.patchify(out["original"], TUB, P)
    np.testing.assert_allclose(rec[~mask], orig[~mask], atol=1e-6)
    mean = orig[mask].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(rec[mask], np.broadcast_to(mean, rec[mask].shape), atol=1e-5)


def test_masked_frames_show_the_mask():
    video01, mask = _clip01(), _mask()
    video = R.normalize_clip(video01)
    oracle = R.masked_targets(video01, mask, TUB, P)
    for fill in (0.5, 0.0):
        out = R.reconstruct(video, mask, oracle, TUB, P, mask_value=fill)
        masked = R.patchify(out["masked"], TUB, P)
        assert np.all(masked[mask] == np.float32(fill))
        np.testing.assert_allclose(masked[~mask], R.patchify(video01, TUB, P)[~mask], atol=1e-5)
    # tube: the same spatial patches are masked in every frame
    m = mask.reshape(2, T // TUB, -1)
    assert (m == m[:, :1]).all()


def test_reconstruct_checks_prediction_shape():
    video, mask = R.normalize_clip(_clip01()), _mask()
    with pytest.raises(ValueError, match="predictions"):
        R.reconstruct(video, mask, np.zeros((2, 3, PIX * 3)), TUB, P)


def test_run_reconstruction_with_oracle_predictor():
    clip = _clip01(b=1)[0]
    seen = {}

    def predict(video, mask):
        seen["video"], seen["mask"] = video, mask
        return torch.from_numpy(R.masked_targets(R.denormalize_clip(video), mask, TUB, P))

    out = R.run_reconstruction(predict, clip, mask_ratio=0.75, seed=5, tubelet=TUB, patch=P)
    assert seen["video"].shape == (1, T, S, S, 3) and seen["video"].dtype == np.float32
    assert seen["mask"].shape == (1, N) and seen["mask"].sum() == (T // TUB) * 3
    np.testing.assert_array_equal(seen["mask"], _mask(b=1, ratio=0.75, seed=5))
    np.testing.assert_allclose(out["reconstruction"][0], clip, atol=1e-5)
    np.testing.assert_array_equal(out["mask"], seen["mask"])


# --------------------------------------------------------------------------- pictures

def test_write_strip_png(tmp_path):
    from PIL import Image

    video01, mask = _clip01(), _mask()
    out = R.reconstruct(R.normalize_clip(video01), mask,
                        R.masked_targets(video01, mask, TUB, P), TUB, P)
    path = R.write_strip(tmp_path / "sub" / "strip.png", out["original"], out["masked"],
                         out["reconstruction"], frames=[0, 3], index=1)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.size == (2 * S + 2, 3 * S + 2 * 2)
        px = np.asarray(img)
    np.testing.assert_array_equal(px[:S, :S], R._to_uint8(video01[1, 0]))
    np.testing.assert_array_equal(px[S + 2:2 * S + 2, S + 2:], R._to_uint8(out["masked"][1, 3]))
    # default frames: every frame of this 4-frame clip, no gap
    path = R.write_strip(tmp_path / "all.png", out["original"][0], out["masked"][0],
                         out["reconstruction"][0], gap=0)
    with Image.open(path) as img:
        assert img.size == (T * S, 3 * S)


def test_write_gif(tmp_path):
    from PIL import Image

    video01 = _clip01()
    path = R.write_gif(tmp_path / "clip.gif", video01, video01, video01, index=0, fps=10)
    with Image.open(path) as img:
        assert img.format == "GIF"
        assert img.size == (3 * S + 2 * 2, S)
        assert img.n_frames == T
        assert img.info.get("duration") == 100


# --------------------------------------------------------------------------- read_clip

def test_read_clip_npy_uint8_sampling_and_resize(tmp_path):
    frames = np.zeros((40, 48, 64, 3), np.uint8)
    frames[:] = np.arange(40, dtype=np.uint8)[:, None, None, None] * 5
    np.save(tmp_path / "c.npy", frames)
    clip = R.read_clip(tmp_path / "c.npy", num_frames=8, img_size=32, sampling_rate=4)
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.float32
    # window of 8 frames every 4 (span 29) centred in 40 frames: starts at frame 5
    np.testing.assert_allclose(clip[:, 0, 0, 0], (5 + 4 * np.arange(8)) * 5 / 255.0, atol=1e-6)


def test_read_clip_npy_float_exact_size(tmp_path):
    frames = _rng(4).random((T, S, S, 3)).astype(np.float32)
    np.save(tmp_path / "f.npy", frames)
    clip = R.read_clip(str(tmp_path / "f.npy"), num_frames=T, img_size=S)
    np.testing.assert_array_equal(clip, frames)  # T == num_frames: taken whole, no resize


def test_read_clip_npy_crops_centre_and_pads_short(tmp_path):
    frames = _rng(5).random((3, S, S + 10, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", frames)
    clip = R.read_clip(tmp_path / "w.npy", num_frames=5, img_size=S)
    assert clip.shape == (5, S, S, 3)
    np.testing.assert_array_equal(clip[:3], frames[:, :, 5:5 + S])
    np.testing.assert_array_equal(clip[3], clip[2])  # short clips repeat their last frame


def test_read_clip_rejects_bad_npy(tmp_path):
    np.save(tmp_path / "big.npy", np.full((T, S, S, 3), 200.0, np.float32))
    with pytest.raises(R.ClipReadError, match=r"\[0, 1\]"):
        R.read_clip(tmp_path / "big.npy", num_frames=T, img_size=S)
    np.save(tmp_path / "shape.npy", np.zeros((T, S), np.uint8))
    with pytest.raises(R.ClipReadError, match="shape"):
        R.read_clip(tmp_path / "shape.npy", num_frames=T, img_size=S)


def _write_bad_npy(folder, case):
    """A ``.npy`` clip numpy cannot load, or loads as something that is not frames."""
    path = folder / f"{case}.npy"
    if case == "text":
        path.write_text("these are my notes, not frames\n")
    elif case == "cut_short":
        np.save(path, np.zeros((T, S, S, 3), np.uint8))
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "objects":
        np.save(path, np.array([{"frames": 1}, None], dtype=object), allow_pickle=True)
    elif case == "npz_archive":
        with open(path, "wb") as handle:
            np.savez(handle, frames=np.zeros((T, S, S, 3), np.uint8))
    elif case == "no_height_or_width":
        np.save(path, np.zeros((8, 0, 0, 3), np.uint8))
    elif case == "no_width_grey":
        np.save(path, np.zeros((8, 5, 0), np.uint8))
    return path


BAD_NPY = {"text": "no NumPy header", "cut_short": "cannot read it as a .npy array",
           "objects": "cannot read it as a .npy array", "npz_archive": "zip archive",
           "no_height_or_width": "at least 1, got shape (8, 0, 0, 3)",
           "no_width_grey": "at least 1, got shape (8, 5, 0, 3)"}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_read_clip_refuses_an_npy_it_cannot_use_in_one_line(tmp_path, case):
    path = _write_bad_npy(tmp_path, case)
    with pytest.raises(R.ClipReadError) as error:
        R.read_clip(path, num_frames=T, img_size=S)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and BAD_NPY[case] in message, message
    assert "\n" not in message


def _reference_clip(path, num_frames, img_size, sampling_rate):
    """read_clip's clip of a video decoded whole, then sampled (its rule before it kept only
    the sampled frames)."""
    from tf_models.video.decode import decode_frames
    from tf_models.video.protocol import resize_short_side

    kept, count = decode_frames(path, transform=lambda f: resize_short_side(
        f, f.shape[0], f.shape[1], img_size))
    frames = np.stack([kept[i] for i in range(count)])
    frames = frames[R._sample_indices(count, num_frames, sampling_rate)]
    top, left = (frames.shape[1] - img_size) // 2, (frames.shape[2] - img_size) // 2
    frames = frames[:, top:top + img_size, left:left + img_size]
    return frames.astype(np.float32) / np.float32(255.0)


@pytest.mark.parametrize("kind", ["mp4", "raw_h264", "edit_list"])
def test_read_clip_keeps_only_the_frames_it_samples_from_a_video(tmp_path, monkeypatch, kind):
    """A long video costs the memory of the sampled frames, not of all of them; the clip is
    the one decoding every frame gives, whether the file states its length (an MP4), states
    none (a raw H.264 stream) or states more samples than it plays (an edit list)."""
    from video_helpers import _frames, shipped_videos, write_edit_list_copy

    source = shipped_videos()["bikes.mp4"]  # 250 frames of 640x272
    if kind == "raw_h264":
        source = write_video(str(tmp_path / "bikes.h264"), _frames(source, 100), muxer="h264")
    elif kind == "edit_list":
        source = write_edit_list_copy(source, str(tmp_path / "cut.mp4"), skip_frames=24)
    expected = _reference_clip(source, num_frames=4, img_size=S, sampling_rate=4)
    resized = []  # the frames decoding kept: each is resized from the source's 272x640 once

    def counting_resize(frame, height, width, size):
        if frame.shape[:2] == (272, 640):
            resized.append(frame.shape)
        return resize_short_side(frame, height, width, size)

    resize_short_side = R.resize_short_side
    monkeypatch.setattr(R, "resize_short_side", counting_resize)
    clip = R.read_clip(source, num_frames=4, img_size=S, sampling_rate=4)
    np.testing.assert_array_equal(clip, expected)
    assert len(resized) == 4  # the four sampled frames, none of the others


def test_read_clip_names_a_file_of_another_kind_and_both_accepted_forms(tmp_path):
    (tmp_path / "clip.xyz").write_bytes(b"\0" * 16)
    with pytest.raises(R.ClipReadError, match="clip.xyz: is not a video file") as err:
        R.read_clip(tmp_path / "clip.xyz")
    assert ".npy" in str(err.value) and "\n" not in str(err.value)


def test_read_clip_names_a_file_that_is_not_a_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 16)
    with pytest.raises(R.ClipReadError, match="clip.mp4: is not a video file") as err:
        R.read_clip(tmp_path / "clip.mp4")
    assert "\n" not in str(err.value)
    with pytest.raises(R.ClipReadError, match="no such file"):
        R.read_clip(tmp_path / "missing.avi")


def test_read_clip_decodes_a_video_with_the_video_reader(tmp_path):
    # 20 frames of one flat grey each (codec-safe), 10 apart: frame i is grey 10 * i + 20
    levels = 20 + 10 * np.arange(20)
    frames = [np.full((S, S + 16, 3), level, np.uint8) for level in levels]
    path = write_video(str(tmp_path / "clip.mp4"), frames)
    clip = R.read_clip(path, num_frames=4, img_size=S, sampling_rate=4)
    assert clip.shape == (4, S, S, 3) and clip.dtype == np.float32
    # span (4 - 1) * 4 + 1 = 13 frames centred in 20: frames 3, 7, 11, 15
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), levels[[3, 7, 11, 15]] / 255.0,
                               atol=3 / 255.0)


def test_module_imports_no_framework_at_import_time():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(R))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names} | {
        (n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"torch", "timm", "torchvision", "tensorflow", "keras", "PIL",
                        "torch_reference", "converter"}


def test_read_clip_resizes_float_frames(tmp_path):
    frames = np.full((T, 64, 48, 3), 0.25, np.float32)
    frames[..., 1] = 0.75
    np.save(tmp_path / "tall.npy", frames)
    clip = R.read_clip(tmp_path / "tall.npy", num_frames=T, img_size=S)
    assert clip.shape == (T, S, S, 3) and clip.dtype == np.float32
    np.testing.assert_allclose(clip[..., 0], 0.25, atol=1e-6)
    np.testing.assert_allclose(clip[..., 1], 0.75, atol=1e-6)


# --------------------------------------------------------------------------- the console script

# The child's first lines: a meta-path finder that refuses torch, timm and torchvision (as a
# machine without them would), then videomae-reconstruct's own entry point.
TORCH_BLOCKED_ENTRY_POINT = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, NoTorch())
from videomae_cli.convert import reconstruct_main
sys.argv[0] = "videomae-reconstruct"
try:
    reconstruct_main()
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision"))
    print("TORCH-SIDE-MODULES", loaded)
"""


def test_reconstruct_command_runs_where_torch_cannot_be_imported(tiny_pt_converted, tmp_path):
    np.save(tmp_path / "clip.npy", _clip01(b=1)[0])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-c", TORCH_BLOCKED_ENTRY_POINT, "--model",
         tiny_pt_converted.paths["keras"], "--clip", str(tmp_path / "clip.npy"), "--out",
         str(tmp_path / "strip.png")],
        env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        f"wrote {tmp_path / 'strip.png'} (mask ratio 0.9, 6 of 8 tokens masked)",
        "TORCH-SIDE-MODULES []"]
    assert done.stderr == ""  # TensorFlow's start-up lines stay off the terminal
    assert (tmp_path / "strip.png").is_file()


def test_an_encoder_savedmodel_is_refused_without_advising_the_conversion_it_had(
        tiny_encoder_converted, tmp_path):
    """An encoder-only SavedModel takes no mask either; before, the line said "convert with
    --mode PT", which a PT encoder already was."""
    from click.testing import CliRunner

    from videomae_cli.reconstruct import reconstruct_command

    np.save(tmp_path / "clip.npy", _clip01(b=1)[0])
    model = tiny_encoder_converted.paths["savedmodel"]
    result = CliRunner().invoke(reconstruct_command, [
        "--model", model, "--clip", str(tmp_path / "clip.npy"), "--out",
        str(tmp_path / "strip.png")])
    assert result.exit_code == 2
    assert result.output == (f"error: {model}: SavedModel takes no mask: a classifier or an "
                             f"encoder, not a pre-trained (PT) masked autoencoder; convert a PT "
                             f"checkpoint with --mode PT, without --encoder-only\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy"]


def test_a_mask_ratio_that_masks_no_patch_is_one_line(tiny_pt_converted, tmp_path):
    """The tiny model has 4 patches per frame: 0.2 masks none (the decoder would predict every
    token, as upstream's does, and there is nothing to reconstruct)."""
    from click.testing import CliRunner

    from videomae_cli.reconstruct import reconstruct_command

    np.save(tmp_path / "clip.npy", _clip01(b=1)[0])
    result = CliRunner().invoke(reconstruct_command, [
        "--model", tiny_pt_converted.paths["keras"], "--clip", str(tmp_path / "clip.npy"),
        "--out", str(tmp_path / "strip.png"), "--mask-ratio", "0.2"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--mask-ratio 0.2: masks 0 of the 4" in lines[0], result.output
    assert "from 0.25 to 0.75" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy"]


@pytest.mark.parametrize("case", ["text", "objects", "no_height_or_width"])
def test_reconstruct_command_refuses_a_bad_npy_clip_in_one_line(tiny_pt_converted, tmp_path,
                                                                case):
    from click.testing import CliRunner

    from videomae_cli.reconstruct import reconstruct_command

    clip = _write_bad_npy(tmp_path, case)
    result = CliRunner().invoke(reconstruct_command, [
        "--model", tiny_pt_converted.paths["keras"], "--clip", str(clip),
        "--out", str(tmp_path / "strip.png")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {clip}: "), result.output
    assert BAD_NPY[case] in lines[0]
    assert not (tmp_path / "strip.png").exists()


@pytest.mark.parametrize("extra, out, words", [
    (["--mask-ratio", "1.0"], "strip.png", "--mask-ratio"),
    (["--mask-ratio", "-1"], "strip.png", "--mask-ratio"),
    (["--sampling-rate", "0"], "strip.png", "--sampling-rate"),
    (["--seed", "-1"], "strip.png", "--seed"),  # before: numpy's traceback after the model ran
    ([], "strip.jpg", "expected a .png (a strip) or .gif"),
    (["--force"], "folder.png", "is a folder"),
])
def test_reconstruct_refuses_bad_arguments_before_loading_the_model(tmp_path, extra, out,
                                                                    words):
    from click.testing import CliRunner

    from videomae_cli.reconstruct import reconstruct_command

    (tmp_path / "folder.png").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(reconstruct_command, [
        "--model", str(tmp_path / "no-model.keras"), "--clip", str(tmp_path / "no-clip.npy"),
        "--out", str(tmp_path / out)] + extra)
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_image_that_cannot_be_written_is_one_line_and_leaves_no_partial_file(
        tiny_pt_converted, tmp_path):
    from click.testing import CliRunner

    from videomae_cli.reconstruct import reconstruct_command

    np.save(tmp_path / "clip.npy", _clip01(b=1)[0])
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "strip.png"  # a folder that is a file
    result = CliRunner().invoke(reconstruct_command, [
        "--model", tiny_pt_converted.paths["keras"], "--clip", str(tmp_path / "clip.npy"),
        "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{out}: cannot write it" in lines[0], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "clip.npy"]


def test_reconstruct_stopped_while_writing_keeps_the_old_image_and_no_partial_file(
        tiny_pt_converted, tmp_path, monkeypatch):
    """SIGTERM while the strip is written: one ``error:`` line, exit 2, the image that was
    there (--force) untouched, no hidden half-written file (before: killed with no line, exit
    -15, the partial file left beside it). A real signal to this process, mid-write."""
    import signal

    from click.testing import CliRunner

    from videomae_cli.reconstruct import reconstruct_command

    real = R.write_strip

    def write_half_then_stop(path, *frames):
        with open(path, "wb") as half:
            half.write(b"half an image")
        os.kill(os.getpid(), signal.SIGTERM)  # the command's handler raises at the next line
        real(path, *frames)

    def not_the_commands(signum, frame):
        raise AssertionError("SIGTERM reached the test's handler: the command installed none")

    monkeypatch.setattr(R, "write_strip", write_half_then_stop)
    np.save(tmp_path / "clip.npy", _clip01(b=1)[0])
    (tmp_path / "strip.png").write_bytes(b"the old image")
    previous = signal.signal(signal.SIGTERM, not_the_commands)
    try:
        result = CliRunner().invoke(reconstruct_command, [
            "--model", tiny_pt_converted.paths["keras"], "--clip", str(tmp_path / "clip.npy"),
            "--out", str(tmp_path / "strip.png"), "--force"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: interrupted; {tmp_path / 'strip.png'} was not written"]
    assert (tmp_path / "strip.png").read_bytes() == b"the old image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy", "strip.png"]


def test_two_runs_writing_the_same_image_at_once_each_write_their_own_partial_file(
        tiny_pt_converted, tmp_path, monkeypatch):
    """A second run writes the same --out while the first one's image is half on disk. Before:
    both wrote ``.strip.png.partial.png``; the second renamed the first's file away (or two
    processes wrote into one file) and the first failed with ``cannot write it``. Now each run
    writes its own partial file; the one that renames last wins, whole."""
    from PIL import Image

    real = R.write_strip
    written = []

    def write_then_let_another_run_write(path, *frames):
        real(path, *frames)
        written.append(path)
        if len(written) == 1:  # the first run's image is on disk, not yet renamed
            R.reconstruct_clip(model, clip, out, seed=1)

    monkeypatch.setattr(R, "write_strip", write_then_let_another_run_write)
    model, clip, out = tiny_pt_converted.paths["keras"], str(tmp_path / "clip.npy"), str(
        tmp_path / "strip.png")
    np.save(clip, _clip01(b=1)[0])
    first = R.reconstruct_clip(model, clip, out, seed=0)
    assert first["path"] == out and len(set(written)) == 2, written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy", "strip.png"]
    with Image.open(out) as image:
        image.load()  # whole


def test_a_killed_runs_partial_image_is_removed_and_a_live_runs_kept(tiny_pt_converted,
                                                                   tmp_path):
    """A run killed with SIGKILL leaves its partial file (nothing runs after SIGKILL); the
    next run writing the same image removes it, and leaves alone that of a run still alive.
    Before: every killed run's ``.strip.png.partial.png`` stayed."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid is gone
    dead = tmp_path / f".strip.png.{finished.pid}-0123abcd.partial.png"
    live = tmp_path / f".strip.png.{os.getppid()}-0123abcd.partial.png"
    for path in (dead, live):
        path.write_bytes(b"half an image")
    np.save(tmp_path / "clip.npy", _clip01(b=1)[0])
    R.reconstruct_clip(tiny_pt_converted.paths["keras"], str(tmp_path / "clip.npy"),
                       str(tmp_path / "strip.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clip.npy", "strip.png", live.name])
