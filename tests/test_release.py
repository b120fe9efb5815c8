"""Release assets: build a release folder from tiny synthetic conversions, check every file
against SHA256SUMS and the manifest, and make sure a changed byte or a wrong model is caught,
by ``verify_release``, by the fresh-process re-check and by ``scripts/release.py``.

Each fresh-process check costs ~10 s (torch + tensorflow imports), so the release is built once
per session (conftest.tiny_release, shared with test_presets) and the tampering tests work on
copies of it.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np
import pytest

import converter
from converter.errors import ConversionError
from converter.export import artifact_paths, tree_sha256, verify_artifacts
from converter.release import (build_release, check_assets, publish_release, render_model_zoo,
                               verify_release, write_sha256sums, zip_savedmodel)
from converter.zoo import get_entry

from conftest import (RELEASE_BASE_URL, REPO_ROOT, TINY_FT, TINY_PT,
                      TINY_RELEASE_EXPORT as EXPORTED, assert_one_line_error)

BASE_URL = RELEASE_BASE_URL  # the trailing slash must not double up
BASE = BASE_URL.rstrip("/")
NAMES = (TINY_FT, TINY_PT)
ASSET_SUFFIXES = (".savedmodel.zip", ".weights.h5", ".keras", ".json", ".md", ".kerashub.tar")
# the FT entry is converted with --litert-quantize int8, so its .tflite and .int8.tflite ship
# too; the PT entry has neither
TFLITE = {TINY_FT: (".tflite", ".int8.tflite"), TINY_PT: ()}
TOLERANCE = 1e-5


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _flip_byte(path, where=0.5):
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    position = int(len(data) * where)
    data[position] ^= 0xFF
    with open(path, "wb") as handle:
        handle.write(bytes(data))


def _leftovers(parent):
    return [n for n in os.listdir(parent) if n.startswith(".release-partial-")]


def _write_manifest(release_dir, manifest):
    with open(os.path.join(release_dir, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def conversions(tiny_release):
    """The tiny K400 FT (with its LiteRT file) and PT entries converted from synthetic
    checkpoints (seed 0), in one folder (conftest.tiny_release)."""
    return tiny_release[3], tiny_release[4]


@pytest.fixture(scope="module")
def seed1_ft(tiny_forced_seed1):
    """A folder holding the tiny FT entry converted from another synthetic checkpoint (seed 1):
    same shapes, other weights: the 'wrong model' (the session's, conftest.tiny_forced_seed1)."""
    return tiny_forced_seed1[0]


@pytest.fixture(scope="module")
def release(tiny_release):
    """The release built once per session (conftest.tiny_release) from ``conversions``."""
    release_dir, manifest, log, _, _ = tiny_release
    return release_dir, manifest, log


@pytest.fixture
def release_copy(release, tmp_path):
    """A copy of the built release that a test may tamper with."""
    copy = str(tmp_path / "release")
    shutil.copytree(release[0], copy)
    return copy


@pytest.fixture
def conversion_copy(conversions, tmp_path):
    copy = str(tmp_path / "weights")
    shutil.copytree(conversions[0], copy)
    return copy


# --- what a release holds ----------------------------------------------------------------------

def test_release_holds_every_asset_and_nothing_else(release, conversions):
    release_dir, manifest, log = release
    expected = {f"{name}{suffix}" for name in NAMES for suffix in ASSET_SUFFIXES + TFLITE[name]}
    expected |= {"SHA256SUMS", "manifest.json", "MODEL_ZOO.md"}
    assert set(os.listdir(release_dir)) == expected
    assert _leftovers(os.path.dirname(release_dir)) == []
    assert sorted(manifest["entries"]) == sorted(NAMES)
    # the export beside the conversions is left out first (its own test below)
    assert [line.split(":")[0] for line in log] == [f"{EXPORTED}.json", *sorted(NAMES)]
    # the conversion folder is left as it was
    conv_dir, results = conversions
    for name in NAMES:
        assert verify_artifacts(conv_dir, get_entry(name), {"sha256": results[
            name].report.source.sha256}) is None


def _umask_mode():
    probe = tempfile.mkdtemp()
    try:
        os.mkdir(os.path.join(probe, "plain"))
        return os.stat(os.path.join(probe, "plain")).st_mode & 0o777
    finally:
        shutil.rmtree(probe)


def test_the_release_folder_gets_a_plain_folders_mode_not_a_private_one(release):
    """A release folder is readable as mkdir would make it (before: mkdtemp's 0700, which a
    web server run by another user cannot serve)."""
    assert os.stat(release[0]).st_mode & 0o777 == _umask_mode()


def test_sha256sums_lists_every_other_file_with_its_real_digest(release):
    release_dir = release[0]
    with open(os.path.join(release_dir, "SHA256SUMS")) as handle:
        lines = handle.read().splitlines()
    listed = {}
    for line in lines:
        match = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line)
        assert match, line
        listed[match.group(2)] = match.group(1)
    assert list(listed) == sorted(listed)
    assert set(listed) == set(os.listdir(release_dir)) - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert _sha256(os.path.join(release_dir, name)) == digest, name
    if shutil.which("sha256sum"):  # the format `sha256sum -c` reads
        done = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=release_dir,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_manifest_assets_match_the_files(release, conversions):
    release_dir, manifest, _ = release
    _, results = conversions
    with open(os.path.join(release_dir, "manifest.json")) as handle:
        assert json.load(handle) == manifest
    kinds = {".savedmodel.zip": "savedmodel", ".weights.h5": "weights", ".keras": "keras",
             ".json": "report", ".md": "card", ".tflite": "litert", ".int8.tflite": "litert_int8",
             ".kerashub.tar": "kerashub"}
    expected = {f"{name}{suffix}" for name in NAMES for suffix in ASSET_SUFFIXES + TFLITE[name]}
    assert set(manifest["assets"]) == expected
    for name in NAMES:
        for suffix, kind in kinds.items():
            if suffix not in ASSET_SUFFIXES + TFLITE[name]:
                continue
            asset_name = f"{name}{suffix}"
            asset = manifest["assets"][asset_name]
            path = os.path.join(release_dir, asset_name)
            assert asset["entry"] == name and asset["kind"] == kind
            assert asset["bytes"] == os.path.getsize(path)
            assert asset["sha256"] == _sha256(path)
            assert asset["source_sha256"] == results[name].report.source.sha256
            assert asset["url"] == f"{BASE}/{asset_name}"
    # the weights and .keras are the converted files, byte for byte
    conv_dir = conversions[0]
    for name in NAMES:
        for kind, suffix in (("weights", ".weights.h5"), ("keras", ".keras"),
                             ("litert", ".tflite"), ("litert_int8", ".int8.tflite")):
            if name + suffix in manifest["assets"]:
                assert manifest["assets"][name + suffix]["sha256"] == _sha256(
                    artifact_paths(conv_dir, name, litert=True)[kind])
    assert TINY_FT + ".tflite" in manifest["assets"]


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not os.path.exists(os.path.join(REPO_ROOT, ".git")),
                    reason="the tests do not run from a git checkout")
def test_manifest_commit_is_the_checkouts_or_the_one_a_built_copy_was_built_from(tmp_path):
    """``git_commit``: a checkout's HEAD; an installed copy built by setup.py (``pip install
    .``) carries its build's commit; a copy inside another repository (a virtual environment
    in a project's checkout) is not given that repository's HEAD."""
    from converter.release import git_commit

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", REPO_ROOT, str(clone))
    head = _git(clone, "rev-parse", "HEAD")
    assert git_commit(str(clone / "converter")) == head
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / "app.py").write_text("")
    _git(project, "add", "app.py")
    _git(project, "commit", "-qm", "a project")
    site = project / ".venv" / "site-packages"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(site)],
                   cwd=clone, check=True, capture_output=True)
    assert (site / "converter" / "BUILD_COMMIT").read_text() == head + "\n"
    assert git_commit(str(site / "converter")) == head != _git(project, "rev-parse", "HEAD")
    (site / "converter" / "BUILD_COMMIT").unlink()
    assert git_commit(str(site / "converter")) is None


def test_manifest_entries_record_source_versions_and_checks(release, conversions):
    _, manifest, _ = release
    _, results = conversions
    assert manifest["base_url"] == BASE_URL
    assert manifest["converter_version"] == converter.__version__
    assert manifest["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}",
                                                          manifest["git_commit"])
    for name in NAMES:
        info = manifest["entries"][name]
        report = results[name].report
        assert info["entry"]["name"] == name
        assert info["source_sha256"] == report.source.sha256
        assert info["synthetic_seed"] == 0
        assert info["versions"] == report.versions
        assert set(info["versions"]) >= {"videomae-convert", "torch", "tensorflow", "keras"}
        for key in ("tf_err_vs_f64", "torch_err_vs_f64", "max_abs", "tolerance"):
            assert info["parity"][key] == getattr(report.parity, key)
        # the .tflite files too were reloaded in the fresh process and re-checked: the int8
        # one against the bound its conversion held it to, not the tolerance
        assert set(info["release_check"]) == {"savedmodel", "weights", "keras", "kerashub"} | (
            {"litert", "litert_int8"} if TFLITE[name] else set())
        for kind, error in info["release_check"].items():
            if kind == "litert_int8":
                assert TOLERANCE < error <= report.reload_checks[kind].tolerance
                continue
            assert 0.0 <= error <= TOLERANCE, (name, kind, error)


def test_model_zoo_md_links_every_asset_and_shows_parity(release):
    release_dir, manifest, _ = release
    with open(os.path.join(release_dir, "MODEL_ZOO.md")) as handle:
        text = handle.read()
    assert text == render_model_zoo(manifest, BASE_URL)
    assert "## Kinetics-400" in text
    assert "Something-Something" not in text  # no entry of that dataset: no empty section
    assert "v0.0.1//" not in text
    for name in NAMES:
        rows = [line for line in text.splitlines() if line.startswith(f"| [{name}]")]
        assert len(rows) == 1, text
        row = rows[0]
        for suffix in (".md", ".savedmodel.zip", ".keras", ".weights.h5",
                       ".kerashub.tar") + TFLITE[name]:
            assert f"({BASE}/{name}{suffix})" in row
        assert (f"{name}.tflite" in row) == bool(TFLITE[name])
        parity = manifest["entries"][name]["parity"]
        assert f"{parity['tf_err_vs_f64']:.1e} / {parity['torch_err_vs_f64']:.1e}" in row
        assert "(synthetic)" in row
    if manifest["git_commit"]:
        assert manifest["git_commit"] in text


def test_model_cards_state_the_source_and_input_contract(release, conversions):
    release_dir, manifest, _ = release
    cards = {}
    for name in NAMES:
        with open(os.path.join(release_dir, f"{name}.md")) as handle:
            cards[name] = handle.read()
        card = cards[name]
        assert card.startswith(f"# {name}\n")
        assert "synthetic checkpoint" in card and "seed 0" in card
        assert "## Input contract" in card
        assert "`video`: float32 `[batch, 4, 32, 32, 3]`" in card
        assert manifest["entries"][name]["source_sha256"] in card
        for kind in manifest["entries"][name]["release_check"]:
            assert f"{kind} {manifest['entries'][name]['release_check'][kind]:.2e}" in card
        assert (f"Interpreter(model_path='{name}.tflite')" in card) == bool(TFLITE[name])
        assert (f"`{name}.int8.tflite`: the same with dynamic-range int8 weights" in card) \
            == bool(TFLITE[name])
    assert "`mask`: bool `[batch, 8]`" in cards[TINY_PT]
    assert "Output `pixels`: `[batch, n_masked, 1536]`" in cards[TINY_PT]
    assert "`mask`" not in cards[TINY_FT]
    assert "Output `logits`: `[batch, 400]`" in cards[TINY_FT]


def test_a_model_cards_litert_snippet_runs_the_shipped_tflite_as_the_keras_model_runs(
        release):
    """A deployer's run of the card: its snippet, as written, on the released .tflite and the
    views of a real video, normalised as the card says, gives the .keras model's logits, and
    the output name the card gives is the file's. Before, the snippet stopped at
    allocate_tensors and the card never said the file's output is called `Identity`, not the
    `logits` of its contract."""
    import keras

    from converter.litert import make_interpreter
    from tf_models.video import normalize_views, protocol_for, read_views
    from video_helpers import shipped_videos

    release_dir = release[0]
    with open(os.path.join(release_dir, f"{TINY_FT}.md")) as handle:
        card = handle.read()
    said = card.split(f"`{TINY_FT}.tflite`: ", 1)[1]
    assert "LiteRT names its output `Identity` (`logits` above):" in said.split("\n", 1)[0]
    snippet = said.split("```python\n", 1)[1].split("```", 1)[0]
    protocol = protocol_for("k400", 4, 32, "1x1")  # the card's [1, 4, 32, 32, 3]
    video = normalize_views(read_views(shipped_videos()["bikes.mp4"], protocol),
                            protocol.mean, protocol.std)
    assert "mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)" in card
    path = os.path.join(release_dir, f"{TINY_FT}.tflite")
    namespace = {"video": video,  # the interpreter the conversion's checks use
                 "Interpreter": lambda model_path: make_interpreter(model_path)}
    exec(snippet.replace("from ai_edge_litert.interpreter import Interpreter", "")
         .replace(f"'{TINY_FT}.tflite'", repr(path)), namespace)
    assert [d["name"] for d in namespace["interpreter"].get_output_details()] == ["Identity"]
    model = keras.saving.load_model(os.path.join(release_dir, f"{TINY_FT}.keras"))
    expected = np.asarray(model.predict(video, verbose=0))
    assert namespace["logits"].shape == expected.shape == (1, 400)
    assert np.max(np.abs(namespace["logits"] - expected)) <= TOLERANCE


def test_savedmodel_zip_is_deterministic_and_holds_the_folder(release, conversions, tmp_path):
    release_dir = release[0]
    conv_dir = conversions[0]
    zipped = os.path.join(release_dir, f"{TINY_FT}.savedmodel.zip")
    with zipfile.ZipFile(zipped) as archive:
        names = archive.namelist()
        assert all(n.startswith(f"{TINY_FT}/") for n in names)
        assert f"{TINY_FT}/saved_model.pb" in names
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert archive.testzip() is None
    folder = artifact_paths(conv_dir, TINY_FT)["savedmodel"]
    again = str(tmp_path / "again.zip")
    zip_savedmodel(folder, again)
    assert _sha256(again) == _sha256(zipped)
    # unzipped, it is the converted folder file for file
    shutil.unpack_archive(again, str(tmp_path / "unzipped"))
    assert tree_sha256(str(tmp_path / "unzipped" / TINY_FT)) == tree_sha256(folder)


# --- the keras-hub presets --------------------------------------------------------------------

PRESET_FILES = {TINY_FT: {"config.json", "metadata.json", "model.weights.h5", "task.json",
                          "task.weights.h5", "preprocessor.json", "video_converter.json",
                          "README.md"},
                TINY_PT: {"config.json", "metadata.json", "model.weights.h5", "task.json",
                          "task.weights.h5", "README.md"}}


def test_each_entry_ships_a_deterministic_keras_hub_preset_tar_with_its_card(release,
                                                                            tmp_path):
    """NAME.kerashub.tar: one top folder NAME/ holding what save_to_preset writes and the
    entry's model card (under Hugging Face's metadata block) as README.md."""
    from converter.release import tar_preset, untar_preset

    release_dir = release[0]
    for name in NAMES:
        tar_path = os.path.join(release_dir, f"{name}.kerashub.tar")
        with tarfile.open(tar_path) as archive:
            members = archive.getmembers()
        assert {m.name.split("/")[0] for m in members} == {name}
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        folder = untar_preset(tar_path, str(tmp_path / name))
        assert set(os.listdir(folder)) == PRESET_FILES[name]
        with open(os.path.join(folder, "README.md")) as handle:
            readme = handle.read()
        with open(os.path.join(release_dir, f"{name}.md")) as handle:
            card = handle.read()
        front, _, body = readme[4:].partition("\n---\n")
        assert readme.startswith("---\n") and body == card
        assert "library_name: keras-hub" in front and "license: cc-by-nc-4.0" in front
        assert ("pipeline_tag: video-classification" in front) == (name == TINY_FT)
        assert f"{name}.kerashub.tar` unpacks" in card and "from_preset" in card
        again = str(tmp_path / f"{name}.again.tar")
        tar_preset(folder, again)
        assert _sha256(again) == _sha256(tar_path)


def test_a_release_preset_loads_in_a_fresh_process_and_predicts_like_the_savedmodel(
        release, tmp_path):
    """keras-hub's Backbone.from_preset (after ``import tf_models``) and the classifier's
    from_preset on the release's unpacked preset, in a new process: keras-hub objects, and
    predict on raw uint8 frames equals the entry's SavedModel on upstream-normalised frames."""
    import tensorflow as tf

    from converter.release import untar_preset
    from tf_models.video.protocol import normalize_views

    release_dir = release[0]
    folder = untar_preset(os.path.join(release_dir, f"{TINY_FT}.kerashub.tar"),
                          str(tmp_path / "preset"))
    frames = np.random.default_rng(7).integers(0, 256, (2, 4, 32, 32, 3)).astype("uint8")
    np.save(tmp_path / "frames.npy", frames)
    code = ("import json, sys, numpy as np, tf_models, keras_hub\n"
            "folder, frames = sys.argv[1], np.load(sys.argv[2])\n"
            "backbone = keras_hub.models.Backbone.from_preset(folder)\n"
            "task = tf_models.VideoMAEVideoClassifier.from_preset(folder)\n"
            "np.save(sys.argv[3], task.predict(frames, verbose=0))\n"
            "print(json.dumps([type(backbone).__name__, type(task).__name__,\n"
            "    isinstance(backbone, keras_hub.models.Backbone),\n"
            "    isinstance(task, keras_hub.models.Task)]))\n")
    done = subprocess.run([sys.executable, "-c", code, folder, str(tmp_path / "frames.npy"),
                           str(tmp_path / "out.npy")], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [
        "VideoMAEBackbone", "VideoMAEVideoClassifier", True, True]
    with zipfile.ZipFile(os.path.join(release_dir, f"{TINY_FT}.savedmodel.zip")) as archive:
        archive.extractall(tmp_path / "sm")
    serve = tf.saved_model.load(str(tmp_path / "sm" / TINY_FT)).signatures["serving_default"]
    expected = serve(video=tf.constant(normalize_views(frames)))["logits"].numpy()
    found = np.load(tmp_path / "out.npy")
    assert found.shape == expected.shape == (2, 400)
    assert np.abs(found - expected).max() <= 1e-5 * np.abs(expected).max()


# --- verify_release ----------------------------------------------------------------------------

def test_verify_release_passes_on_the_built_release(release):
    assert verify_release(release[0]) == []


@pytest.mark.slow  # two fresh processes; what still covers it in the fast tier: below
def test_verify_release_recheck_passes_on_the_built_release(release):
    """Reloads every asset (the zip unpacked) in a fresh process: one process per entry.

    Slow tier (two fresh processes). In the fast tier the wrong-model test rechecks this same
    release with only the FT .keras swapped: every other asset, the PT entry's three included,
    must pass there (exactly one problem), and test_check_assets_tells_the_wrong_model_from_the_
    right_one passes the right FT .keras."""
    assert verify_release(release[0], recheck=True) == []


@pytest.mark.parametrize("suffix", ASSET_SUFFIXES + (".tflite",))
def test_a_flipped_byte_in_any_asset_is_reported(release_copy, suffix):
    name = f"{TINY_FT}{suffix}"
    _flip_byte(os.path.join(release_copy, name))
    problems = verify_release(release_copy)
    assert problems, suffix
    assert any(p.startswith(f"{name}: sha256 differs") for p in problems), problems
    assert all(p.startswith(name) for p in problems), problems


@pytest.mark.parametrize("where", [0.0, 0.999])
def test_a_flipped_byte_at_either_end_of_the_keras_file_is_reported(release_copy, where):
    name = f"{TINY_FT}.keras"
    _flip_byte(os.path.join(release_copy, name), where)
    assert verify_release(release_copy) == [f"{name}: sha256 differs from SHA256SUMS"]


def test_an_edited_manifest_is_reported(release_copy):
    with open(os.path.join(release_copy, "manifest.json")) as handle:
        manifest = json.load(handle)
    manifest["entries"][TINY_FT]["parity"]["tf_err_vs_f64"] = 0.0  # a prettier number
    _write_manifest(release_copy, manifest)
    problems = verify_release(release_copy)
    assert any(p.startswith("manifest.json: sha256 differs") for p in problems), problems
    assert "MODEL_ZOO.md: does not match the manifest" in problems


def test_an_unreadable_manifest_is_reported(release_copy):
    _flip_byte(os.path.join(release_copy, "manifest.json"), 0.0)  # '{' no more
    problems = verify_release(release_copy)
    assert any(p.startswith("manifest.json: sha256 differs") for p in problems), problems
    assert any(p.startswith("manifest.json: unreadable") for p in problems), problems


def test_a_deleted_file_is_reported(release_copy):
    name = f"{TINY_PT}.weights.h5"
    os.remove(os.path.join(release_copy, name))
    assert f"{name}: listed in SHA256SUMS but missing" in verify_release(release_copy)


def test_a_deleted_sha256sums_is_reported(release_copy):
    os.remove(os.path.join(release_copy, "SHA256SUMS"))
    problems = verify_release(release_copy)
    assert len(problems) == 1 and "SHA256SUMS" in problems[0] and "missing" in problems[0]


def test_a_sha256sums_that_cannot_be_read_is_one_problem_line(release_copy):
    sums = os.path.join(release_copy, "SHA256SUMS")
    os.remove(sums)
    os.mkdir(sums)  # (before: an IsADirectoryError out of verify_release)
    problems = verify_release(release_copy)
    assert len(problems) == 1 and problems[0].startswith(
        f"{sums}: expected a readable file, found one that cannot be read ("), problems


def test_an_extra_file_is_reported(release_copy):
    with open(os.path.join(release_copy, "extra.bin"), "wb") as handle:
        handle.write(b"not part of the release")
    problems = verify_release(release_copy)
    assert "extra.bin: not listed in SHA256SUMS" in problems
    assert "extra.bin: not in the manifest" in problems


def test_an_extra_file_added_to_sha256sums_is_still_reported(release_copy):
    with open(os.path.join(release_copy, "extra.bin"), "wb") as handle:
        handle.write(b"not part of the release")
    write_sha256sums(release_copy)
    assert verify_release(release_copy) == ["extra.bin: not in the manifest"]


def test_an_edited_model_zoo_is_reported(release_copy):
    path = os.path.join(release_copy, "MODEL_ZOO.md")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write(text.replace("(synthetic)", "", 1))
    problems = verify_release(release_copy)
    assert "MODEL_ZOO.md: sha256 differs from SHA256SUMS" in problems
    assert "MODEL_ZOO.md: does not match the manifest" in problems
    # re-signing SHA256SUMS does not hide it: MODEL_ZOO.md is re-rendered from the manifest
    write_sha256sums(release_copy)
    assert verify_release(release_copy) == ["MODEL_ZOO.md: does not match the manifest"]


def test_a_changed_asset_with_resigned_sha256sums_is_reported_by_the_manifest(release_copy):
    name = f"{TINY_FT}.keras"
    _flip_byte(os.path.join(release_copy, name))
    write_sha256sums(release_copy)
    assert verify_release(release_copy) == [f"{name}: manifest sha256 differs from SHA256SUMS"]


def test_a_truncated_asset_is_reported_by_size(release_copy):
    name = f"{TINY_FT}.weights.h5"
    path = os.path.join(release_copy, name)
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:-10])
    problems = verify_release(release_copy)
    assert f"{name}: sha256 differs from SHA256SUMS" in problems
    assert f"{name}: size differs from the manifest" in problems


@pytest.mark.parametrize("line", ["garbage\n", "\n"])
def test_a_malformed_sha256sums_line_is_reported_not_raised(release_copy, line):
    with open(os.path.join(release_copy, "SHA256SUMS"), "a") as handle:
        handle.write(line)
    problems = verify_release(release_copy)
    assert any("SHA256SUMS" in p for p in problems), problems


def test_an_entry_missing_an_asset_is_reported_even_when_every_listing_agrees(release_copy):
    name = f"{TINY_PT}.keras"
    os.remove(os.path.join(release_copy, name))
    with open(os.path.join(release_copy, "manifest.json")) as handle:
        manifest = json.load(handle)
    del manifest["assets"][name]
    _write_manifest(release_copy, manifest)
    write_sha256sums(release_copy)
    with open(os.path.join(release_copy, "MODEL_ZOO.md")) as handle:
        assert f"/{name})" in handle.read()  # still linked
    assert any(name in p for p in verify_release(release_copy))


def test_a_tflite_dropped_from_every_listing_is_reported_from_the_report(release_copy):
    """The .tflite is an optional asset, but one its conversion wrote must ship."""
    name = f"{TINY_FT}.tflite"
    os.remove(os.path.join(release_copy, name))
    with open(os.path.join(release_copy, "manifest.json")) as handle:
        manifest = json.load(handle)
    del manifest["assets"][name]
    _write_manifest(release_copy, manifest)
    with open(os.path.join(release_copy, "MODEL_ZOO.md"), "w") as handle:
        handle.write(render_model_zoo(manifest, manifest["base_url"]))
    write_sha256sums(release_copy)
    assert verify_release(release_copy) == [
        f"{name}: the litert asset of {TINY_FT} is in its report but not in the manifest"]


def test_a_wrong_model_signed_consistently_is_caught_only_by_the_recheck(release_copy,
                                                                          seed1_ft):
    """Swap in the seed-1 .keras and update SHA256SUMS, the manifest and MODEL_ZOO.md to
    match: the checksums all agree, the fresh-process reload does not. The PT entry stays in
    the release: its assets, and the FT entry's other three (.tflite included), pass the same
    recheck."""
    name = f"{TINY_FT}.keras"
    path = os.path.join(release_copy, name)
    shutil.copyfile(artifact_paths(seed1_ft, TINY_FT)["keras"], path)
    with open(os.path.join(release_copy, "manifest.json")) as handle:
        manifest = json.load(handle)
    manifest["assets"][name].update(bytes=os.path.getsize(path), sha256=_sha256(path))
    _write_manifest(release_copy, manifest)
    write_sha256sums(release_copy)
    assert verify_release(release_copy) == []
    problems = verify_release(release_copy, recheck=True)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{TINY_FT}: keras reloads")


def test_the_fresh_process_checks_every_entry_and_a_failure_names_the_report(conversions,
                                                                            tmp_path):
    """One process checks the entries in turn: it is still running after the first check and
    takes the next request; an asset it cannot load ends it, and the error names the report."""
    from converter.release import FreshProcessChecker

    report = artifact_paths(conversions[0], TINY_FT)["report"]
    with pytest.raises(ConversionError) as caught:
        with FreshProcessChecker() as checker:
            process = checker.process
            weights = artifact_paths(conversions[0], TINY_FT)["weights"]
            errors = checker.check(report, {"weights": weights})
            assert list(errors) == ["weights"] and errors["weights"] <= 1e-5
            assert process.poll() is None  # alive, waiting for the next entry
            checker.check(report, {"weights": str(tmp_path / "missing.weights.h5")})
    assert checker.process is process and process.returncode not in (None, 0)
    line = str(caught.value)
    assert line.startswith(f"{report}: fresh-process reload check failed (")
    assert "\n" not in line and "missing.weights.h5" in line


# --- verify: releases wrong but consistently re-signed ------------------------------------------

def _resign(release_dir, manifest, changed=()):
    """Make every listing agree again after an edit: the changed files' sizes and sha256s in
    the manifest, MODEL_ZOO.md re-rendered from it, SHA256SUMS rewritten."""
    for name in changed:
        path = os.path.join(release_dir, name)
        manifest["assets"][name].update(bytes=os.path.getsize(path), sha256=_sha256(path))
    _write_manifest(release_dir, manifest)
    with open(os.path.join(release_dir, "MODEL_ZOO.md"), "w") as handle:
        handle.write(render_model_zoo(manifest, manifest["base_url"]))
    write_sha256sums(release_dir)


def _manifest(release_dir):
    with open(os.path.join(release_dir, "manifest.json")) as handle:
        return json.load(handle)


@pytest.mark.parametrize("key", ["parity", "source_sha256"])
def test_a_manifest_entry_that_differs_from_its_report_is_reported(release_copy, key):
    manifest = _manifest(release_copy)
    if key == "parity":
        manifest["entries"][TINY_FT]["parity"]["tf_err_vs_f64"] = 0.0  # a prettier number
    else:
        manifest["entries"][TINY_FT]["source_sha256"] = "0" * 64
        for asset in manifest["assets"].values():
            if asset["entry"] == TINY_FT:
                asset["source_sha256"] = "0" * 64
    _resign(release_copy, manifest)
    assert verify_release(release_copy) == [
        f"manifest.json: entries[{TINY_FT!r}][{key!r}] differs from {TINY_FT}.json; rebuild "
        f"the release with scripts/release.py build"]


def test_an_edited_model_card_is_reported_after_resigning(release_copy):
    name = f"{TINY_PT}.md"
    path = os.path.join(release_copy, name)
    with open(path) as handle:
        text = handle.read()
    assert "Source sha256" in text
    with open(path, "w") as handle:
        handle.write(text.replace("synthetic checkpoint", "official checkpoint"))
    _resign(release_copy, _manifest(release_copy), changed=[name])
    assert verify_release(release_copy) == [
        f"{name}: does not match the card rendered from {TINY_PT}.json and the manifest; "
        f"rebuild the release with scripts/release.py build"]


def test_an_edited_card_inside_a_preset_tar_is_reported_after_resigning(release_copy,
                                                                        tmp_path):
    from converter.release import tar_preset, untar_preset

    name = f"{TINY_PT}.kerashub.tar"
    folder = untar_preset(os.path.join(release_copy, name), str(tmp_path / "unpacked"))
    with open(os.path.join(folder, "README.md"), "a") as handle:
        handle.write("\nTop-1 99.9 on everything.\n")
    tar_preset(folder, os.path.join(release_copy, name))
    _resign(release_copy, _manifest(release_copy), changed=[name])
    assert verify_release(release_copy) == [
        f"{name}: its README.md does not match the card rendered from {TINY_PT}.json and the "
        f"manifest; rebuild the release with scripts/release.py build"]


@pytest.mark.parametrize("task, found", [
    (b"{not json", "its task.json is not JSON: Expecting property name"),
    (b"[]", "its task.json is a list, not a JSON object")], ids=["not-json", "a-list"])
def test_a_preset_tar_whose_task_is_no_object_is_one_problem_line_after_resigning(
        release_copy, tmp_path, task, found):
    """Before: verify stopped at the first such tar with "unexpected JSONDecodeError" (or
    AttributeError) and reported nothing else."""
    from converter.release import tar_preset, untar_preset

    name = f"{TINY_PT}.kerashub.tar"
    folder = untar_preset(os.path.join(release_copy, name), str(tmp_path / "unpacked"))
    with open(os.path.join(folder, "task.json"), "wb") as handle:
        handle.write(task)
    tar_preset(folder, os.path.join(release_copy, name))
    _resign(release_copy, _manifest(release_copy), changed=[name])
    problems = verify_release(release_copy)
    assert len(problems) == 1 and problems[0].startswith(f"{name}: unreadable ({found}")
    assert problems[0].endswith("rebuild the release with scripts/release.py build")


def test_an_asset_url_off_the_base_url_is_reported(release_copy):
    manifest = _manifest(release_copy)
    name = f"{TINY_FT}.keras"
    manifest["assets"][name]["url"] = "https://elsewhere.example/model.keras"
    _resign(release_copy, manifest)
    assert verify_release(release_copy) == [
        f"{name}: expected url {BASE}/{name} in the manifest, found "
        f"https://elsewhere.example/model.keras; rebuild the release with "
        f"scripts/release.py build"]


def test_assets_of_an_entry_deleted_from_the_manifest_are_reported(release_copy):
    manifest = _manifest(release_copy)
    del manifest["entries"][TINY_PT]
    _resign(release_copy, manifest)
    problems = verify_release(release_copy)
    assert f"{TINY_PT}.keras: an asset of {TINY_PT}, which is not in the manifest's entries; " \
           f"rebuild the release with scripts/release.py build" in problems
    assert len(problems) == len(ASSET_SUFFIXES), problems  # one line per asset of the entry


def test_a_model_zoo_md_removed_from_every_listing_is_reported(release_copy):
    os.remove(os.path.join(release_copy, "MODEL_ZOO.md"))
    write_sha256sums(release_copy)
    assert verify_release(release_copy) == [
        "MODEL_ZOO.md: missing; rebuild the release with scripts/release.py build"]


@pytest.mark.parametrize("edit, found", [
    (lambda m: m.pop("assets"), "expected 'assets' to be a dict, found nothing"),
    (lambda m: [m], "expected a JSON object, found a list"),
    (lambda m: m["assets"][f"{TINY_FT}.keras"].pop("bytes"),
     f"expected assets['{TINY_FT}.keras'] 'bytes' to be an int, found nothing"),
    (lambda m: m["entries"][TINY_FT]["release_check"].update(keras="tiny"),
     f"expected entries['{TINY_FT}']['release_check']['keras'] to be a number, found a str"),
], ids=["no-assets", "a-list", "an-asset-without-bytes", "a-check-that-is-no-number"])
def test_a_malformed_manifest_is_one_problem_line_for_verify_and_publish(release_copy, tmp_path,
                                                                         edit, found):
    manifest = _manifest(release_copy)
    replaced = edit(manifest)
    _write_manifest(release_copy, replaced if isinstance(replaced, list) else manifest)
    write_sha256sums(release_copy)
    expected = f"manifest.json: {found}; rebuild the release with scripts/release.py build"
    assert verify_release(release_copy) == [expected]
    done = _script_in_process("verify", release_copy)
    assert assert_one_line_error(done, 1) == f"error: {expected}"
    done = _script_in_process("publish", release_copy, "--to", "hf://org", "--dry-run",
                              str(tmp_path / "dry"))
    assert assert_one_line_error(done, 2) == (
        f"error: {release_copy}: does not verify: {expected}; run scripts/release.py verify")


def test_sha256sums_naming_a_file_outside_the_release_is_reported(release_copy, tmp_path):
    outside = tmp_path / "hostname"
    outside.write_text("build-host\n")
    with open(os.path.join(release_copy, "SHA256SUMS"), "a") as handle:
        handle.write(f"{_sha256(outside)}  ../hostname\n")
    assert os.path.exists(os.path.join(release_copy, "../hostname"))
    assert verify_release(release_copy) == [
        "SHA256SUMS: expected names of files in the release folder, found '../hostname' (a "
        "path); rebuild the release with scripts/release.py build"]


def test_a_sha256sums_name_the_manifest_does_not_list_is_reported(release_copy):
    with open(os.path.join(release_copy, "SHA256SUMS"), "a") as handle:
        handle.write(f"{'0' * 64}  ghost.bin\n")
    problems = verify_release(release_copy)
    assert "ghost.bin: not in the manifest" in problems


# --- build_release: what stops it ---------------------------------------------------------------

def test_build_fails_on_an_artifact_changed_after_conversion(conversion_copy, tmp_path):
    """One byte of the last entry's weights changed after conversion: the report's sha256
    stops the build before any entry is packed or re-checked (every entry is verified
    first), and nothing is left behind. (A failure after an entry was packed is covered by
    the wrong-model test below.)"""
    assert sorted((TINY_FT, TINY_PT))[-1] == TINY_PT  # the entry built last
    _flip_byte(artifact_paths(conversion_copy, TINY_PT)["weights"])
    parent = tmp_path / "out"
    parent.mkdir()
    release_dir = str(parent / "release")
    log = []
    with pytest.raises(ConversionError) as raised:
        build_release(conversion_copy, release_dir, BASE_URL, log=log.append)
    message = str(raised.value)
    weights = artifact_paths(conversion_copy, TINY_PT)["weights"]
    assert message == (f"{TINY_PT}: expected artifacts that match its report "
                       f"{artifact_paths(conversion_copy, TINY_PT)['report']}, found that "
                       f"{weights} changed since it was written (sha256 differs); convert "
                       f"{TINY_PT} again with --force, or move its files out of the folder to "
                       f"release without it")
    # no entry packed, no fresh process asked (the export beside them is left out first)
    assert [line for line in log if not line.startswith(f"{EXPORTED}.json:")] == []
    assert not os.path.exists(release_dir)
    assert os.listdir(parent) == []  # no .release-partial-* staging folder either


def test_a_missing_artifact_stops_the_build_in_one_line_with_the_fix(conversion_copy,
                                                                      tmp_path):
    """A deleted .keras: the line names the entry, its report and the missing file, and says
    what to do (before: "NAME: artifacts do not verify: PATH is missing", no fix)."""
    keras_path = artifact_paths(conversion_copy, TINY_FT)["keras"]
    os.remove(keras_path)
    done = _script_in_process("build", conversion_copy, str(tmp_path / "release"),
                              "--base-url", BASE_URL)
    assert done.exit_code == 2 and done.stderr.strip().splitlines()[-1] == (  # after the
        # line that leaves the export beside the entries out
        f"error: {TINY_FT}: expected artifacts that match its report "
        f"{artifact_paths(conversion_copy, TINY_FT)['report']}, found that {keras_path} is "
        f"missing; convert {TINY_FT} again with --force, or move its files out of the folder "
        f"to release without it")
    assert not (tmp_path / "release").exists() and _leftovers(str(tmp_path)) == []


def test_build_fails_on_a_wrong_model_from_another_seed(conversion_copy, seed1_ft, tmp_path):
    """The seed-1 .keras copied over the seed-0 one: the report's sha256 stops the build."""
    for path in artifact_paths(conversion_copy, TINY_PT).values():  # the FT entry alone
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    keras_path = artifact_paths(conversion_copy, TINY_FT)["keras"]
    shutil.copyfile(artifact_paths(seed1_ft, TINY_FT)["keras"], keras_path)
    parent = tmp_path / "out"
    parent.mkdir()
    release_dir = str(parent / "release")
    with pytest.raises(ConversionError, match="sha256 differs"):
        build_release(conversion_copy, release_dir, BASE_URL, log=lambda line: None)
    assert os.listdir(parent) == []

    # the report re-signed to match: now only the fresh-process reload can tell
    report_path = artifact_paths(conversion_copy, TINY_FT)["report"]
    with open(report_path) as handle:
        report = json.load(handle)
    report["artifact_sha256"]["keras"] = tree_sha256(keras_path)
    with open(report_path, "w") as handle:
        json.dump(report, handle, indent=2)
    with pytest.raises(ConversionError) as raised:
        build_release(conversion_copy, release_dir, BASE_URL, log=lambda line: None)
    message = str(raised.value)
    assert "reloaded assets differ from the reference" in message
    assert "keras" in message and "savedmodel" not in message and "weights" not in message
    # the entry had been packed into the staging folder when the check failed: removed
    assert os.listdir(parent) == []


def test_build_refuses_an_existing_release_folder_without_force(release, conversions, tmp_path):
    release_dir = release[0]
    before = {n: _sha256(os.path.join(release_dir, n)) for n in os.listdir(release_dir)}
    with pytest.raises(ConversionError, match="already exists.*--force"):
        build_release(conversions[0], release_dir, BASE_URL, log=lambda line: None)
    assert {n: _sha256(os.path.join(release_dir, n)) for n in os.listdir(release_dir)} == before
    assert _leftovers(os.path.dirname(release_dir)) == []
    # an empty folder is refused as well
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        build_release(conversions[0], str(empty), BASE_URL, log=lambda line: None)
    assert os.listdir(empty) == []


def test_build_needs_a_conversion_folder_with_reports(tmp_path):
    with pytest.raises(ConversionError, match="not a folder"):
        build_release(str(tmp_path / "nowhere"), str(tmp_path / "r"), BASE_URL)
    empty = tmp_path / "weights"
    empty.mkdir()
    (empty / "notes.json").write_text('{"not": "a report"}')
    (empty / "broken.json").write_text("{")
    with pytest.raises(ConversionError, match="no conversion reports"):
        build_release(str(empty), str(tmp_path / "r"), BASE_URL)
    assert not (tmp_path / "r").exists()
    assert _leftovers(str(tmp_path)) == []


def test_build_refuses_a_damaged_report_beside_its_artifacts(conversion_copy, tmp_path):
    """A NAME.json cut short (or not UTF-8) beside NAME's artifacts is that entry's report,
    damaged: the build stops, naming it, before any work (before: skipped as "not a report",
    so the release went out without the entry, or "no conversion reports" when alone)."""
    report = os.path.join(conversion_copy, f"{TINY_FT}.json")
    with open(report, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(ConversionError) as raised:
        build_release(conversion_copy, str(tmp_path / "r"), BASE_URL)
    assert str(raised.value).startswith(
        f"{report}: expected the conversion report of {TINY_FT}, {TINY_FT}.int8.tflite, "
        f"{TINY_FT}.keras, {TINY_FT}.tflite, {TINY_FT}.weights.h5 beside it, found a file "
        f"that cannot be read as JSON (")
    assert str(raised.value).endswith(f"); convert {TINY_FT} again with --force, or move its "
                                      f"files out of the folder")
    assert not (tmp_path / "r").exists() and _leftovers(str(tmp_path)) == []


def test_build_refuses_artifacts_whose_report_is_missing(conversion_copy, tmp_path):
    """NAME's artifacts with no NAME.json beside them (the report is placed last: a
    conversion killed while moving its artifacts into place, or a report moved away): the
    build stops, naming them, before any work (before: the release went out without the
    entry, and no line said so)."""
    report = os.path.join(conversion_copy, f"{TINY_FT}.json")
    os.remove(report)
    log = []
    with pytest.raises(ConversionError) as raised:
        build_release(conversion_copy, str(tmp_path / "r"), BASE_URL, log=log.append)
    assert str(raised.value) == (
        f"{report}: expected the conversion report of {TINY_FT}, {TINY_FT}.int8.tflite, "
        f"{TINY_FT}.keras, {TINY_FT}.tflite, {TINY_FT}.weights.h5 beside them, found none; "
        f"convert {TINY_FT} again with --force, or move its files out of the folder to release "
        f"without it")
    assert not any("packing" in line for line in log)
    assert not (tmp_path / "r").exists() and _leftovers(str(tmp_path)) == []


def test_build_refuses_a_copy_of_a_report_beside_the_original_in_one_line(tiny_pt_converted,
                                                                          tmp_path):
    """``NAME (copy).json`` beside ``NAME.json``: both report the same entry, which the build
    would pack and re-check twice (before: it did, silently)."""
    from conftest import copy_artifacts

    conv_dir = copy_artifacts(tiny_pt_converted, str(tmp_path / "weights"))
    original = artifact_paths(conv_dir, TINY_PT)["report"]
    copy = os.path.join(conv_dir, f"{TINY_PT} (copy).json")
    shutil.copyfile(original, copy)
    done = _script_in_process("build", conv_dir, str(tmp_path / "release"),
                              "--base-url", BASE_URL)
    assert assert_one_line_error(done, 2) == (
        f"error: {copy} and {original}: expected one conversion report per entry, found both "
        f"reporting {TINY_PT}; move {copy} out of the folder")
    assert not (tmp_path / "release").exists() and _leftovers(str(tmp_path)) == []


def test_the_manifests_converter_version_is_the_builders_and_each_entry_keeps_its_own(
        tiny_pt_converted, tmp_path):
    """The manifest's top-level ``converter_version`` goes with its ``git_commit``: both are
    the building checkout's; each entry's ``versions`` is its report's, and MODEL_ZOO.md names
    the conversions' version when it is another (before: the top level took the last entry's
    report's version beside the builder's commit)."""
    from conftest import copy_artifacts

    conv_dir = copy_artifacts(tiny_pt_converted, str(tmp_path / "weights"))
    _edit_report(conv_dir, TINY_PT, lambda report: report["versions"].update(
        {"videomae-convert": "0.0.9"}))
    release_dir = str(tmp_path / "release")
    manifest = build_release(conv_dir, release_dir, BASE_URL, log=lambda line: None)
    assert manifest["converter_version"] == converter.__version__ != "0.0.9"
    assert manifest["entries"][TINY_PT]["versions"]["videomae-convert"] == "0.0.9"
    with open(os.path.join(release_dir, "MODEL_ZOO.md")) as handle:
        zoo = handle.read()
    commit = manifest["git_commit"] or "unknown"
    assert (f" checkpoints by videomae-convert 0.0.9; released by videomae-convert "
            f"{converter.__version__} (commit {commit}).\n") in zoo
    with open(os.path.join(release_dir, f"{TINY_PT}.md")) as handle:
        assert "- Converted with videomae-convert 0.0.9, " in handle.read()
    assert verify_release(release_dir) == []
    # entries of two versions: each model card names its own
    info = manifest["entries"][TINY_PT]
    entries = {TINY_PT: info, "other": dict(info, versions={"videomae-convert": "0.1.0"})}
    text = render_model_zoo(dict(manifest, entries=entries), BASE_URL)
    assert (f" checkpoints by videomae-convert 0.0.9, 0.1.0 (each model card says which); "
            f"released by videomae-convert {converter.__version__} (commit {commit}).") in text


def test_an_encoder_only_conversion_is_released_with_its_backbone_preset(
        tiny_encoder_converted, tmp_path):
    """``NAME_encoder`` is no zoo preset name: its keras-hub preset is the backbone alone,
    written from the base entry's zoo row, and the release verifies."""
    from conftest import copy_artifacts

    name = f"{TINY_FT}_encoder"
    conv_dir = copy_artifacts(tiny_encoder_converted, str(tmp_path / "weights"))
    release_dir = str(tmp_path / "release")
    manifest = build_release(conv_dir, release_dir, BASE_URL, log=lambda line: None)
    assert sorted(manifest["entries"]) == [name]
    tar_name = f"{name}.kerashub.tar"
    assert manifest["assets"][tar_name]["kind"] == "kerashub"
    with tarfile.open(os.path.join(release_dir, tar_name)) as archive:
        config = json.load(archive.extractfile(f"{name}/config.json"))
        assert f"{name}/task.json" not in archive.getnames()  # no task: features only
    assert config["class_name"] == "VideoMAEBackbone"
    assert verify_release(release_dir) == []
    # its MODEL_ZOO.md row says encoder, and shows no head's upstream accuracy (the tiny entry
    # has none: given one here, which the same row without encoder_only shows)
    info = manifest["entries"][name]
    scored = dict(info, entry=dict(info["entry"], top1=81.5, top5=95.1))
    for encoder_only, mode, accuracy in ((True, "FT encoder", "-"), (False, "FT", "81.5/95.1")):
        entries = {name: dict(scored, entry=dict(scored["entry"], encoder_only=encoder_only))}
        text = render_model_zoo(dict(manifest, entries=entries), BASE_URL)
        row = next(line for line in text.splitlines() if line.startswith(f"| [{name}]"))
        cells = [cell.strip() for cell in row.split("|")]
        assert (cells[2], cells[7]) == (mode, accuracy), row


def test_build_leaves_an_export_report_out_with_one_logged_line(release, conversions):
    """The session's release was built from a folder that also holds a ``videomae-export`` of
    the tiny FT model (conftest.tiny_release): a user's model, not a zoo conversion."""
    release_dir, manifest, log = release
    with open(os.path.join(conversions[0], f"{EXPORTED}.json")) as handle:
        report = json.load(handle)
    assert report["reference"] == "keras" and report["parity"] is None
    assert sorted(manifest["entries"]) == sorted(NAMES)
    assert not any(name.startswith(EXPORTED) for name in os.listdir(release_dir))
    left_out = [line for line in log if EXPORTED in line]
    assert left_out == [f"{EXPORTED}.json: a videomae-export report (reference 'keras'), not a "
                        f"zoo conversion; left out of the release"]


def _edit_report(conv_dir, name, edit):
    """``edit`` (a function of the JSON object) applied to ``name``'s report in ``conv_dir``;
    returns the report's path."""
    path = artifact_paths(conv_dir, name)["report"]
    with open(path) as handle:
        report = json.load(handle)
    edit(report)
    with open(path, "w") as handle:
        json.dump(report, handle)
    return path


def test_build_refuses_a_report_of_an_entry_the_zoo_does_not_know(conversion_copy, tmp_path):
    path = _edit_report(conversion_copy, TINY_PT, lambda report: report["entry"].update(
        name="TFVideoMAE_Z_K400_4x32_PT"))
    with pytest.raises(ConversionError) as raised:
        build_release(conversion_copy, str(tmp_path / "release"), BASE_URL,
                      log=lambda line: None)
    assert str(raised.value).startswith(f"{path}: expected a report of a zoo entry, found "
                                        f"entry 'TFVideoMAE_Z_K400_4x32_PT'")
    assert not (tmp_path / "release").exists()


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_build_refuses_a_release_folder_overlapping_the_conversions(conversion_copy, where):
    release_dir = {"same": conversion_copy,
                   "inside": os.path.join(conversion_copy, "release"),
                   "around": os.path.dirname(conversion_copy)}[where]
    before = _tree(conversion_copy)
    with pytest.raises(ConversionError, match="expected a release folder outside the "
                                              "conversion folder"):
        build_release(conversion_copy, release_dir, BASE_URL, force=True,
                      log=lambda line: pytest.fail(f"work started: {line}"))
    assert _tree(conversion_copy) == before
    assert not os.path.exists(os.path.join(conversion_copy, "release"))


@pytest.mark.parametrize("force", [False, True])
def test_build_refuses_a_release_path_that_is_a_file(conversions, tmp_path, force):
    target = tmp_path / "release"
    target.write_text("keep me\n")
    with pytest.raises(ConversionError, match="expected a release folder, found a file"):
        build_release(conversions[0], str(target), BASE_URL, force=force,
                      log=lambda line: pytest.fail(f"work started: {line}"))
    assert target.read_text() == "keep me\n"
    assert _leftovers(str(tmp_path)) == []


def test_build_refuses_a_release_path_under_a_file_in_one_line(conversions, tmp_path):
    """(before: an unexpected FileExistsError, which the script reported against the
    conversion folder, asking for a bug report)"""
    (tmp_path / "notes.txt").write_text("a file")
    release_dir = str(tmp_path / "notes.txt" / "release")
    with pytest.raises(ConversionError) as raised:
        build_release(conversions[0], release_dir, BASE_URL)
    assert str(raised.value) == (f"{release_dir}: expected a release path in a folder, found "
                                 f"its folder cannot be made (File exists: "
                                 f"{tmp_path / 'notes.txt'}); choose another release folder")


@pytest.mark.parametrize("force", [False, True])
def test_build_refuses_a_release_path_that_is_a_link_before_any_work(conversions, tmp_path,
                                                                     force):
    """Before: accepted, and with --force every entry was packed and checked, then rmtree
    refused the link at the very end and the work was thrown away."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "manifest.json").write_text("{}\n")
    link = tmp_path / "release"
    link.symlink_to(real)
    with pytest.raises(ConversionError, match="expected a release folder, found a symbolic "
                                              "link to .*real; pass the folder itself"):
        build_release(conversions[0], str(link), BASE_URL, force=force,
                      log=lambda line: pytest.fail(f"work started: {line}"))
    assert os.listdir(real) == ["manifest.json"] and link.is_symlink()


def test_a_forced_build_swaps_the_new_release_in_and_puts_the_old_back_on_failure(tmp_path,
                                                                                  monkeypatch):
    """The last step of ``build --force``: the old release moves aside and is deleted only
    once the new one is in place (before: deleted first, so a failure between left neither);
    if the move fails the old one is back under its name."""
    from converter import release as release_module

    def folder(name, text):
        path = tmp_path / name
        path.mkdir()
        (path / "manifest.json").write_text(text)
        return str(path)

    target = folder("release", "old\n")
    release_module._swap_in(folder(".release-partial-1", "new\n"), target)
    assert (tmp_path / "release" / "manifest.json").read_text() == "new\n"
    assert sorted(os.listdir(tmp_path)) == ["release"]
    real_replace = os.replace

    def failing(source, destination):
        if "partial" in str(source):
            raise OSError(28, "No space left on device")
        return real_replace(source, destination)

    monkeypatch.setattr(release_module.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        release_module._swap_in(folder(".release-partial-2", "newer\n"), target)
    assert (tmp_path / "release" / "manifest.json").read_text() == "new\n"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".release-old-")]


def test_build_force_replaces_only_a_release_folder(conversions, tmp_path):
    target = tmp_path / "home"
    target.mkdir()
    (target / "notes.txt").write_text("keep me\n")
    with pytest.raises(ConversionError, match="found a folder without manifest.json"):
        build_release(conversions[0], str(target), BASE_URL, force=True,
                      log=lambda line: pytest.fail(f"work started: {line}"))
    assert (target / "notes.txt").read_text() == "keep me\n"


def test_build_refuses_a_folder_whose_last_conversion_of_an_entry_failed(conversion_copy,
                                                                         tmp_path):
    from converter.record import RunOutcome

    logs = os.path.join(conversion_copy, "logs")
    os.makedirs(logs)
    # failed in its last --all run but converted since by another run: its report is here
    RunOutcome(TINY_FT, "failed", "an earlier run").save(
        os.path.join(logs, f"{TINY_FT}.outcome.json"))
    failed = os.path.join(logs, "TFVideoMAE_S_K400_16x224_FT.outcome.json")
    RunOutcome("TFVideoMAE_S_K400_16x224_FT", "failed",
               "checkpoint: sha256 differs\nmore detail").save(failed)
    done = _script_in_process("build", conversion_copy, str(tmp_path / "release"),
                              "--base-url", BASE_URL)
    line = assert_one_line_error(done, 2)
    assert line == (f"error: {failed}: expected every entry converted, found "
                    f"TFVideoMAE_S_K400_16x224_FT failed (checkpoint: sha256 differs); convert "
                    f"it again, or delete this file to release without it")
    assert not (tmp_path / "release").exists() and _leftovers(str(tmp_path)) == []


def test_release_script_turns_an_unexpected_error_into_one_line(conversions, tmp_path,
                                                                 monkeypatch):
    import converter.release

    def broken(*args, **kwargs):
        raise KeyError("unknown zoo entry 'x';\nsecond line")
    monkeypatch.setattr(converter.release, "build_release", broken)
    monkeypatch.setattr(converter.release, "verify_release", broken)
    monkeypatch.setattr(converter.release, "publish_release", broken)
    for args in (("build", conversions[0], str(tmp_path / "r"), "--base-url", BASE_URL),
                 ("verify", str(tmp_path)), ("publish", str(tmp_path), "--to", "hf://org")):
        done = _script_in_process(*args)
        line = assert_one_line_error(done, 1 if args[0] == "verify" else 2)
        assert line.startswith(f"error: {args[1]}: unexpected KeyError (")
        # the traceback, for the report, is kept in the file the line names
        kept = re.search(r"\(traceback in (\S+)\)", line).group(1)
        with open(kept, encoding="utf-8") as handle:
            text = handle.read()
        os.remove(kept)
        assert "Traceback" in text and "in broken" in text and "second line" in text


def test_a_stopped_build_leaves_no_partial_release_and_keeps_the_old_one(conversions,
                                                                         tmp_path):
    """SIGTERM to ``scripts/release.py build --force`` while it packs (its fresh-process
    checker starting beside it): one line, exit 2, the existing release untouched, and no
    staging folder beside it nor scratch folder in TMPDIR (before, Python's default SIGTERM
    left the half-packed ``.release-partial-*``, GBs at full size, beside the release)."""
    import signal
    import time

    parent, scratch = tmp_path / "out", tmp_path / "tmp"
    (parent / "release").mkdir(parents=True)
    scratch.mkdir()
    old = parent / "release" / "manifest.json"
    old.write_text("{}\n")  # a release folder --force may replace
    with open(tmp_path / "stderr.txt", "w") as err:
        process = subprocess.Popen(
            [sys.executable, os.path.join(REPO_ROOT, "scripts", "release.py"), "build",
             conversions[0], str(parent / "release"), "--base-url", BASE_URL, "--force"],
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": REPO_ROOT},
            start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not any(name.endswith(".savedmodel.zip") for folder in _leftovers(str(parent))
                          if (parent / folder).is_dir() for name in os.listdir(parent / folder)):
                assert process.poll() is None and time.monotonic() < deadline, \
                    "the build ended before it packed anything"
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    stderr = (tmp_path / "stderr.txt").read_text()
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert returncode == 2 and "Traceback" not in stderr, stderr
    assert lines == [f"error: interrupted; {parent / 'release'} was not written (a release "
                     f"there is kept)"], stderr
    assert sorted(os.listdir(parent)) == ["release"]
    assert os.listdir(parent / "release") == ["manifest.json"] and old.read_text() == "{}\n"
    deadline = time.monotonic() + 60  # the checker, stopped with it, removes its own scratch
    while os.listdir(scratch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(scratch) == []


def _killed_child(work, wait_for_signal=False):
    """Fork a child that runs ``work(die)``, where ``die()`` SIGKILLs it as a kill -9 or a
    power cut stops a build (no handler, no finally). Returns the child's pid once it is dead,
    or, with ``wait_for_signal``, once ``work`` has written to its pipe, leaving it running."""
    import signal

    ready, done = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(ready)
            work(lambda: os.kill(os.getpid(), signal.SIGKILL), done)
        finally:
            os._exit(70)
    os.close(done)
    if wait_for_signal:
        assert os.read(ready, 1) == b"1"
    else:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    os.close(ready)
    return pid


def test_a_later_build_removes_what_killed_builds_left_and_keeps_a_live_ones(tmp_path):
    """SIGKILL (or a power cut) stops a build with no cleanup: its half-built
    ``.release-partial-PID-*`` (GBs at full size), and, in a forced build's swap, the old
    release moved aside into ``.release-old-PID-*``. The next build into the same folder
    removes each one whose owner is gone (no process holds its lock), with a logged line,
    puts back an old release that nothing replaced, and keeps a live build's folder and one
    whose owner cannot be told (no lock file). Before: nothing removed them, ever."""
    import signal

    from converter import release as release_module
    from converter.release import publish_release
    from converter.release_scratch import PARTIAL, make_scratch_folder

    parent = tmp_path / "out"
    (parent / "release").mkdir(parents=True)
    (parent / "release" / "manifest.json").write_text("old\n")
    conversions = tmp_path / "weights"
    conversions.mkdir()

    def packing(die, _):  # killed while it packs an entry
        staging = make_scratch_folder(PARTIAL, str(parent))
        with open(os.path.join(staging, f"{TINY_FT}.savedmodel.zip"), "wb") as handle:
            handle.write(b"half")
        die()

    def swapping(die, _):  # killed between the swap's two renames: no release in place
        staging = make_scratch_folder(PARTIAL, str(parent))
        with open(os.path.join(staging, "manifest.json"), "w") as handle:
            handle.write("new\n")
        real_replace = os.replace

        def replace(source, destination):
            if source == staging:
                die()
            return real_replace(source, destination)
        os.replace = replace  # the child's own os module: it dies with it
        release_module._swap_in(staging, str(parent / "release"))

    def building(die, ready):  # a live build, in another process
        make_scratch_folder(PARTIAL, str(parent))
        os.write(ready, b"1")
        while True:
            signal.pause()

    _killed_child(packing)
    _killed_child(swapping)
    assert not (parent / "release").exists()
    live = _killed_child(building, wait_for_signal=True)
    try:
        unowned = parent / ".release-partial-x7k2m9q1"  # an earlier version's: no lock file
        unowned.mkdir()
        stale = sorted(n for n in os.listdir(parent) if not n.endswith(".lock")
                       and n != unowned.name and not n.startswith(f"{PARTIAL}{live}-"))
        assert [n.split("-")[1] for n in stale] == ["old", "partial", "partial"]
        lines = []
        # the old release is back before the destination is checked: without --force the
        # build refuses to replace it
        with pytest.raises(ConversionError, match="already exists; pass --force"):
            build_release(str(conversions), str(parent / "release"), BASE_URL,
                          log=lines.append)
        assert (parent / "release" / "manifest.json").read_text() == "old\n"
        assert os.listdir(parent / "release") == ["manifest.json"]
        kept = sorted(n for n in os.listdir(parent) if n.startswith(f"{PARTIAL}{live}-"))
        assert sorted(os.listdir(parent)) == sorted(["release", unowned.name] + kept)
        assert len(kept) == 2  # the live build's folder and its lock file
        assert lines == [
            f"{parent / 'release'}: put back from {parent / stale[0]}, where a forced build "
            f"stopped (killed, or the machine stopped) while swapping in its new release had "
            f"moved it"] + [
            f"{parent / name}: removed, a scratch folder left by a stopped release build or "
            f"publish (pid {name.split('-')[2]}, gone: killed, or the machine stopped)"
            for name in stale] + [
            f"{unowned}: kept, though it may be a stopped build's scratch folder: it has no "
            f"lock file (an earlier version's, or a file system without flock), so whether "
            f"its build still runs cannot be told; remove it if none does"]
    finally:
        os.kill(live, signal.SIGKILL)
        os.waitpid(live, 0)
    # once that build is gone too, the next one (or a publish --dry-run beside it) removes
    # its folder as well
    lines = []
    with pytest.raises(ConversionError, match="expected a release folder, found nothing"):
        publish_release(str(tmp_path / "nowhere"), "hf://org", dry_run=str(parent / "dry"),
                        log=lines.append)
    assert sorted(os.listdir(parent)) == sorted(["release", unowned.name])
    assert lines[0] == (f"{parent / kept[0]}: removed, a scratch folder left by a stopped "
                        f"release build or publish (pid {live}, gone: killed, or the machine "
                        f"stopped)")


def test_tmpdir_scratch_of_killed_checks_and_publishes_is_removed_by_the_next_run(
        release_copy, tmp_path, monkeypatch):
    """The checker child's ``.videomae-release-check-*`` and publish's ``.videomae-publish-*``
    in TMPDIR (unpacked assets: GBs at full size) are owned like the scratch folders beside
    a release: after a SIGKILL of their process the next run (a publish here) removes them,
    with a logged line, and keeps a live process's. Before: mkdtemp folders nothing removed."""
    import signal
    import tempfile

    from converter import export
    from converter import release as release_module
    from converter.release_scratch import make_scratch_folder

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # TMPDIR, for this process and forks

    def checking(die, _):  # the checker child, killed while it reloads an asset
        export.RELOADERS["keras"] = lambda entry, path: die()
        release_module.check_assets(os.path.join(release_copy, f"{TINY_FT}.json"),
                                    {"keras": os.path.join(release_copy, f"{TINY_FT}.keras")})

    def publishing(die, _):  # killed while it unpacks a preset
        release_module.untar_preset = lambda *args: die()
        release_module.publish_release(release_copy, "hf://org", dry_run=str(tmp_path / "dry"),
                                       log=lambda line: None)

    def checking_live(die, ready):
        make_scratch_folder(".videomae-release-check-", str(temp))
        os.write(ready, b"1")
        while True:
            signal.pause()

    # a publish removes what killed runs left first: the checker is killed after it
    killed = {"publish": _killed_child(publishing), "check": _killed_child(checking)}
    live = _killed_child(checking_live, wait_for_signal=True)
    try:
        left = sorted(n for n in os.listdir(temp) if not n.endswith(".lock"))
        assert sorted(n.rsplit("-", 1)[0] for n in left) == sorted(
            [f".videomae-publish-{killed['publish']}", f".videomae-release-check-{live}",
             f".videomae-release-check-{killed['check']}"]), left
        lines = []
        with pytest.raises(ConversionError, match="expected a release folder, found nothing"):
            publish_release(str(tmp_path / "nowhere"), "hf://org", log=lines.append)
        assert sorted(os.listdir(temp)) == sorted(
            n + suffix for n in left if f"-{live}-" in n for suffix in ("", ".lock"))
        assert len(lines) == 2 and all("removed, a scratch folder left by" in line
                                       for line in lines), lines
    finally:
        os.kill(live, signal.SIGKILL)
        os.waitpid(live, 0)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a descriptor's file "
                                                               "through /proc")
def test_a_release_is_flushed_to_disk_before_it_is_swapped_in_and_its_folder_after(
        tmp_path, monkeypatch):
    """Every file of the staged release and the folder itself are fsync'd before the rename
    that puts it under its final name, and the parent folder after (before: none were, so a
    power cut soon after a build could leave the release folder with empty files)."""
    from converter import release as release_module

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(source, destination):
        events.append(("replace", str(source), str(destination)))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    root = os.path.realpath(tmp_path)
    target = os.path.join(root, "release")
    for existing in (False, True):  # a first build, then a forced one over it
        events.clear()
        staged = os.path.join(root, f".release-partial-{existing}")
        os.mkdir(staged)
        for name in ("manifest.json", "SHA256SUMS"):
            with open(os.path.join(staged, name), "w") as handle:
                handle.write(f"{existing}\n")
        release_module._swap_in(staged, target)
        swap = events.index(("replace", staged, target))
        before = {event[1] for event in events[:swap] if event[0] == "fsync"}
        assert {os.path.join(staged, "manifest.json"), os.path.join(staged, "SHA256SUMS"),
                staged} <= before, events
        assert ("fsync", root) in events[swap:], events
        with open(os.path.join(target, "manifest.json")) as handle:
            assert handle.read() == f"{existing}\n"
    assert os.listdir(root) == ["release"]


# --- the fresh-process check itself ------------------------------------------------------------

def test_check_assets_tells_the_wrong_model_from_the_right_one(conversions, seed1_ft):
    conv_dir = conversions[0]
    report = artifact_paths(conv_dir, TINY_FT)["report"]
    right = check_assets(report, {"keras": artifact_paths(conv_dir, TINY_FT)["keras"]})
    wrong = check_assets(report, {"keras": artifact_paths(seed1_ft, TINY_FT)["keras"]})
    assert right["keras"] <= TOLERANCE
    assert wrong["keras"] > 1e-3


def test_check_assets_reads_the_zipped_savedmodel(release):
    release_dir = release[0]
    assets = {"savedmodel": os.path.join(release_dir, f"{TINY_PT}.savedmodel.zip"),
              "weights": os.path.join(release_dir, f"{TINY_PT}.weights.h5")}
    errors = check_assets(os.path.join(release_dir, f"{TINY_PT}.json"), assets)
    assert set(errors) == set(assets)
    assert all(error <= TOLERANCE for error in errors.values()), errors


def test_check_assets_reads_a_pt_report_from_before_the_output_was_named_pixels(conversions,
                                                                               tmp_path):
    """A PT report written when the output was called ``logits`` still re-checks; a wrong
    fingerprint under that old name still fails."""
    conv_dir = conversions[0]
    with open(artifact_paths(conv_dir, TINY_PT)["report"]) as handle:
        data = json.load(handle)
    for outputs in data["reference_fingerprint"].values():
        assert set(outputs) == {"pixels"}
        outputs["logits"] = outputs.pop("pixels")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assets = {"weights": artifact_paths(conv_dir, TINY_PT)["weights"]}
    assert check_assets(str(old), assets)["weights"] <= TOLERANCE
    for outputs in data["reference_fingerprint"].values():
        outputs["logits"]["values"] = [v + 0.1 for v in outputs["logits"]["values"]]
    old.write_text(json.dumps(data))
    assert check_assets(str(old), assets)["weights"] > 1e-3


# --- scripts/release.py ------------------------------------------------------------------------

def test_an_error_a_stop_caused_is_the_stop_and_keeps_no_traceback_file(conversions, tmp_path,
                                                                        monkeypatch):
    """A stop can land inside a library that turns it into an error of its own (zipfile's
    ValueError "Can't close the ZIP file while there is an open writing handle", seen when
    the stopped-build test's SIGTERM came while a SavedModel was being zipped). That error is
    the stop: one line, exit 2, and no traceback file written for it into TMPDIR (before, each
    command wrote one there, as for a bug, and then reported the stop)."""
    import signal
    import tempfile

    import converter.release
    from videomae_cli import exits

    def stopped(*args, **kwargs):  # the signal arrived, and a library raised its own error
        exits._stopping.Terminated.received = signal.SIGTERM
        raise ValueError("Can't close the ZIP file while there is an open writing handle on it")
    for name in ("build_release", "verify_release", "publish_release"):
        monkeypatch.setattr(converter.release, name, stopped)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for args in (("build", conversions[0], str(tmp_path / "r"), "--base-url", BASE_URL),
                 ("verify", str(tmp_path)), ("publish", str(tmp_path), "--to", "hf://org")):
        line = assert_one_line_error(_script_in_process(*args), 2)
        assert line.startswith("error: interrupted; "), line
        assert os.listdir(scratch) == [], args[0]


def _script_in_process(*args):
    """scripts/release.py's click group run in this process (no ~10 s torch + TF start-up;
    test_publish_uploads_through_keras_hub_and_keeps_our_card runs the script itself)."""
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location(
        "release_script", os.path.join(REPO_ROOT, "scripts", "release.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return CliRunner().invoke(module.cli, list(args))


def test_release_script_takes_dash_h_as_the_console_scripts_do():
    """``-h`` is ``--help`` for the script and each command, as for ``videomae-convert``
    (it was "No such option: -h")."""
    for args in (["-h"], ["build", "-h"], ["verify", "-h"], ["publish", "-h"]):
        done = _script_in_process(*args)
        assert (done.exit_code, done.stdout.startswith("Usage: ")) == (0, True), done.output


def test_release_script_verify(release_copy):
    done = _script_in_process("verify", release_copy)
    assert done.exit_code == 0, done.output[-3000:]
    assert f"{release_copy}: verified" in done.stdout

    _flip_byte(os.path.join(release_copy, f"{TINY_FT}.savedmodel.zip"))
    os.remove(os.path.join(release_copy, f"{TINY_PT}.md"))
    done = _script_in_process("verify", release_copy)
    assert done.exit_code == 1, done.output[-3000:]
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"error: {TINY_FT}.savedmodel.zip: sha256 differs from SHA256SUMS" in errors
    assert f"error: {TINY_PT}.md: listed in SHA256SUMS but missing" in errors
    assert "verified" not in done.stdout


# --- publishing the presets ----------------------------------------------------------------------

def _tree(folder):
    return {os.path.relpath(os.path.join(root, name), folder): _sha256(os.path.join(root, name))
            for root, _, names in os.walk(folder) for name in names}


@pytest.mark.parametrize("crafted", ["gzip", "link out", "dot-dot path"])
def test_a_crafted_preset_tar_is_one_line_and_writes_nothing_outside(crafted, tmp_path):
    """untar_preset unpacks only plain tars, as the build writes them (a compressed one could
    unpack to any size: before, opened with transparent decompression), through tarfile's
    "data" filter (before: its FilterError came out as a raw tarfile error)."""
    import io

    from converter.errors import ConversionError
    from converter.release import untar_preset

    path = str(tmp_path / "NAME.kerashub.tar")
    with tarfile.open(path, "w:gz" if crafted == "gzip" else "w") as archive:
        member = tarfile.TarInfo("NAME/config.json")
        member.size = 2
        archive.addfile(member, io.BytesIO(b"{}"))
        if crafted == "link out":
            link = tarfile.TarInfo("NAME/escape")
            link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
            archive.addfile(link)
        elif crafted == "dot-dot path":
            rooted = tarfile.TarInfo("NAME/../../outside.txt")
            rooted.size = 1
            archive.addfile(rooted, io.BytesIO(b"x"))
    into = tmp_path / "a" / "b"
    with pytest.raises(ConversionError) as caught:
        untar_preset(path, str(into))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        f"{path}: expected a plain tar of one preset folder, as the release build writes, found ")
    assert message.endswith("; rebuild the release")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "a" / "outside.txt").exists()


def _preset_files(release_dir, name, tmp_path):
    from converter.release import untar_preset

    return _tree(untar_preset(os.path.join(release_dir, f"{name}.kerashub.tar"),
                              str(tmp_path / "unpacked" / name)))


def test_publish_dry_run_writes_what_would_be_uploaded_with_our_cards(release_copy, tmp_path):
    """``publish --dry-run DIR``: each preset folder as it would be uploaded (our README.md
    card intact) and uploads.json naming each handle's files; the release is not touched; a
    bad destination, a used folder and a tampered release are refused in one line."""
    before = _tree(release_copy)
    dry = tmp_path / "dry"
    done = _script_in_process("publish", release_copy, "--to", "hf://org", "--dry-run", str(dry))
    assert done.exit_code == 0, done.output[-3000:]
    assert f"{release_copy}: 2 presets written to {dry} (dry run)" in done.stdout
    assert sorted(os.listdir(dry)) == sorted(NAMES + ("uploads.json",))
    assert os.stat(dry).st_mode & 0o777 == _umask_mode()  # as mkdir makes it, not 0700
    with open(dry / "uploads.json") as handle:
        plan = json.load(handle)
    assert sorted(plan) == [f"hf://org/{name}" for name in sorted(NAMES)]
    for name in NAMES:
        written = _tree(str(dry / name))
        assert written == plan[f"hf://org/{name}"] == _preset_files(release_copy, name, tmp_path)
        with open(dry / name / "README.md") as handle:
            readme = handle.read()
        with open(os.path.join(release_copy, f"{name}.md")) as handle:
            assert readme.startswith("---\nlibrary_name: keras-hub\n")
            assert readme.endswith(handle.read())
    assert _tree(release_copy) == before
    assert [n for n in os.listdir(tmp_path) if n.startswith(".publish-partial-")] == []

    from converter.release import publish_release

    kaggle = publish_release(release_copy, "kaggle://me/videomae", dry_run=str(tmp_path / "k"),
                             log=lambda line: None)
    assert sorted(kaggle) == [f"kaggle://me/videomae/keras/{name}" for name in sorted(NAMES)]
    for args, expected in (
            (("--to", "hf://org/extra", "--dry-run", str(tmp_path / "x")),
             "error: --to hf://org/extra: expected hf://ORG"),
            (("--to", "s3://bucket", "--dry-run", str(tmp_path / "x")),
             "error: --to s3://bucket: expected hf://ORG or kaggle://OWNER/MODEL"),
            (("--to", "hf://org", "--dry-run", str(dry)),
             f"error: --dry-run {dry}: expected a new or empty folder, found a folder that "
             f"is not empty; choose another folder"),
            (("--to", "hf://org", "--dry-run", str(dry / "uploads.json")),
             f"error: --dry-run {dry / 'uploads.json'}: expected a new or empty folder, found "
             f"a file; choose another folder")):
        done = _script_in_process("publish", release_copy, *args)
        assert done.exit_code == 2 and done.stderr.strip().splitlines()[-1] == expected
    _flip_byte(os.path.join(release_copy, f"{TINY_PT}.kerashub.tar"))
    done = _script_in_process("publish", release_copy, "--to", "hf://org", "--dry-run",
                              str(tmp_path / "y"))
    assert done.exit_code == 2 and not os.path.exists(tmp_path / "y")
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {release_copy}: does not verify: {TINY_PT}.kerashub.tar: sha256 differs from "
        f"SHA256SUMS; run scripts/release.py verify")


def test_publish_refuses_a_bad_destination_before_verifying_the_release(release_copy,
                                                                      tmp_path):
    """A bad ``--to`` or a used ``--dry-run`` folder is the line a rerun gets, before the
    release is verified (which reads every asset: minutes for the whole zoo; before: the
    verification ran first, and a damaged release hid the option's mistake behind its own)."""
    _flip_byte(os.path.join(release_copy, f"{TINY_PT}.kerashub.tar"))  # reading it would tell
    used = tmp_path / "used"
    used.mkdir()
    (used / "uploads.json").write_text("{}")
    for args, expected in (
            (("--to", "hf://org/extra", "--dry-run", str(tmp_path / "x")),
             "error: --to hf://org/extra: expected hf://ORG"),
            (("--to", "hf://org", "--dry-run", str(used)),
             f"error: --dry-run {used}: expected a new or empty folder, found a folder that "
             f"is not empty; choose another folder")):
        done = _script_in_process("publish", release_copy, *args)
        assert done.exit_code == 2 and done.stderr.strip().splitlines()[-1] == expected
    assert not (tmp_path / "x").exists() and os.listdir(used) == ["uploads.json"]


def test_publish_dry_run_flushes_its_folder_before_and_after_moving_it_in(release_copy,
                                                                          tmp_path, monkeypatch):
    """The dry run's folder is written beside its name, then renamed into place: every file
    in it is flushed to disk before the rename and the parent folder after it, as a built
    release is (before: the rename was never flushed; a power cut could leave a folder of
    empty or short files, or none, under the name the run reported)."""
    import converter.release as release

    dry = tmp_path / "dry"
    flushed = []
    real_tree, real_dir = release.fsync_tree, release.fsync_dir
    monkeypatch.setattr(release, "fsync_tree", lambda path: (
        flushed.append(("tree", os.path.basename(path), dry.exists())), real_tree(path)))
    monkeypatch.setattr(release, "fsync_dir", lambda path: (
        flushed.append(("dir", path, dry.exists())), real_dir(path)))
    publish_release(release_copy, "hf://org", dry_run=str(dry), log=lambda line: None)
    trees = [name for kind, name, there in flushed if kind == "tree" and not there]
    assert trees and trees[-1].startswith(".publish-partial-"), flushed
    assert ("dir", str(tmp_path), True) in flushed, flushed


@pytest.mark.parametrize("found", ["nothing there", "a file"])
def test_verify_release_names_a_missing_folder_in_one_line(tmp_path, found):
    """``verify_release`` called from Python on a path that is no folder: one problem naming
    the folder (before: "RELEASE/SHA256SUMS: missing", as if a release were there and
    damaged)."""
    from converter.release import verify_release

    release_dir = tmp_path / "release"
    if found == "a file":
        release_dir.write_text("not a release\n")
    assert verify_release(str(release_dir)) == [
        f"{release_dir}: expected a release folder, found {found}; check the path, or build "
        f"the release with scripts/release.py build"]


@pytest.mark.parametrize("found", ["nothing there", "a file"])
def test_publish_names_a_missing_release_folder_in_one_line(tmp_path, found):
    """(before: "does not verify: RELEASE/SHA256SUMS: missing; run scripts/release.py
    verify", as if a release were there and damaged)"""
    release_dir = tmp_path / "release"
    if found == "a file":
        release_dir.write_text("not a release\n")
    done = _script_in_process("publish", str(release_dir), "--to", "hf://org")
    assert assert_one_line_error(done, 2) == (
        f"error: {release_dir}: expected a release folder, found {found}; check the path, or "
        f"build the release with scripts/release.py build")


def test_verify_and_publish_name_a_conversion_folder_passed_for_the_release(conversions,
                                                                          tmp_path):
    """The conversion folder (build's input) given to verify or publish: one line saying it
    is no release (before: "weights/SHA256SUMS: missing", and publish's "does not verify:
    ...; run scripts/release.py verify", as if a release were there and damaged)."""
    expected = (f"{conversions[0]}: expected a release folder, found a folder without "
                f"SHA256SUMS or manifest.json (a conversion folder is what build takes); check "
                f"the path, or build the release with scripts/release.py build")
    assert verify_release(conversions[0]) == [expected]
    done = _script_in_process("verify", conversions[0])
    assert assert_one_line_error(done, 1) == f"error: {expected}"
    done = _script_in_process("publish", conversions[0], "--to", "hf://org", "--dry-run",
                              str(tmp_path / "dry"))
    assert assert_one_line_error(done, 2) == f"error: {expected}"
    assert not (tmp_path / "dry").exists()


def test_publish_uploads_through_keras_hub_and_keeps_our_card(release, tmp_path):
    """The real ``scripts/release.py publish --to hf://org`` against a loopback Hub
    (``HF_ENDPOINT``): every preset's files land in hf://org/NAME through
    keras_hub.upload_preset, and the repository's README.md is our card, never keras-hub's
    generated one (which its upload_preset writes into a new repository without a card)."""
    from hub_server import HubServer

    release_dir = release[0]
    with HubServer() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_loopback",
               "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1"}
        done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "release.py"),
                               "publish", release_dir, "--to", "hf://org"], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env,
                              timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{release_dir}: 2 presets uploaded" in done.stdout
    # TensorFlow's start-up lines are silenced as in the console scripts (before: absl,
    # oneDNN and CUDA notices, twice); the script's own progress lines stay
    assert "oneDNN" not in done.stderr and "absl" not in done.stderr, done.stderr[:2000]
    assert sorted(hub.repos) == [f"org/{name}" for name in sorted(NAMES)]
    for name in NAMES:
        uploaded = {path: hashlib.sha256(data).hexdigest()
                    for path, data in hub.repos[f"org/{name}"].items()}
        assert uploaded == _preset_files(release_dir, name, tmp_path)
        commits = [(message, paths) for repo, message, paths in hub.commits
                   if repo == f"org/{name}"]
        assert commits[0] == ("Model card", ["README.md"])  # before keras-hub looks for one
        assert len(commits) == 2 and "README.md" in commits[1][1]
    assert ("POST", "/api/repos/create") in hub.requests


def test_assets_over_the_hosts_file_limit_are_named_for_a_github_base_url(tmp_path):
    """GitHub takes release assets under 2 GiB only, and ViT-H's and ViT-g's fp32 files are
    2.4-4 GB: the build says so, per file, when --base-url is a GitHub one (sparse files here:
    only their sizes are read). A file of exactly 2 GiB is over it too (before: let pass);
    one byte under is not."""
    from converter.release import over_host_limits

    for name, size in (("TFVideoMAE_H_K400_16x224_FT.keras", 2 * 2**30),
                       ("TFVideoMAE_H_K400_16x224_FT.json", 2 * 2**30 - 1)):
        with open(tmp_path / name, "wb") as handle:
            handle.truncate(size)
    github = "https://github.com/me/zoo/releases/download/v1"
    lines = over_host_limits(str(tmp_path), github)
    assert lines == ["warning: TFVideoMAE_H_K400_16x224_FT.keras: 2.15 GB, over GitHub's 2 GiB "
                     "per release asset (github.com in --base-url), where its upload would "
                     "fail; build it with a --part-size under 2147483648 bytes, or without "
                     "--part-size"]
    assert over_host_limits(str(tmp_path), "https://example.org/zoo/v1") == []
    assert over_host_limits(str(tmp_path), "https://notgithub.com/zoo") == []


# --- assets over a part size shipped in parts --------------------------------------------------

PART_SIZE = 96 * 1024  # tiny models' assets are 100 KB to a few MB: most ship in parts


@pytest.fixture(scope="module")
def split_release(conversions, tmp_path_factory):
    """The session's conversions built again with ``part_size=PART_SIZE`` (one more fresh
    process): (release folder, manifest)."""
    release_dir = str(tmp_path_factory.mktemp("split_parent") / "release")
    log = []
    manifest = build_release(conversions[0], release_dir, BASE_URL, log=log.append,
                             part_size=PART_SIZE)
    return release_dir, manifest, log


def _split_assets(manifest):
    return {name: asset for name, asset in manifest["assets"].items() if "parts" in asset}


def test_build_ships_assets_over_the_part_size_in_parts_that_verify(split_release, release):
    """Each model asset over the part size is gone whole and there as numbered parts of at
    most the part size, each in SHA256SUMS (``sha256sum -c`` passes); the manifest keeps the
    whole file's bytes and sha256 (those of the unsplit release's same file) and names the
    parts; MODEL_ZOO.md links every part; the release verifies."""
    release_dir, manifest, log = split_release
    split = _split_assets(manifest)
    assert {f"{TINY_FT}.keras", f"{TINY_FT}.weights.h5", f"{TINY_PT}.savedmodel.zip"} <= set(split)
    assert manifest["part_size"] == PART_SIZE
    with open(os.path.join(release_dir, "SHA256SUMS")) as handle:
        sums = dict(reversed(line.split()) for line in handle)
    on_disk = set(os.listdir(release_dir))
    for name, asset in manifest["assets"].items():
        if name not in split:
            assert name in on_disk and asset["bytes"] <= PART_SIZE or asset["kind"] in (
                "report", "card")
            continue
        parts = asset["parts"]
        assert name not in on_disk and name not in sums
        assert parts == [f"{name}.part-{i:03d}-of-{len(parts):03d}"
                         for i in range(1, len(parts) + 1)]
        assert len(parts) == -(-asset["bytes"] // PART_SIZE) >= 2
        joined = b"".join(open(os.path.join(release_dir, p), "rb").read() for p in parts)
        assert len(joined) == asset["bytes"]
        assert hashlib.sha256(joined).hexdigest() == asset["sha256"]
        assert all(_sha256(os.path.join(release_dir, p)) == sums[p] for p in parts)
        assert all(os.path.getsize(os.path.join(release_dir, p)) <= PART_SIZE for p in parts)
        assert f"{name}: " in "\n".join(log) and f"{len(parts)} parts" in "\n".join(log)
    for name in (f"{TINY_FT}.keras", f"{TINY_FT}.weights.h5", f"{TINY_PT}.savedmodel.zip"):
        assert manifest["assets"][name]["sha256"] == release[1]["assets"][name]["sha256"]
    checked = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=release_dir,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with open(os.path.join(release_dir, "MODEL_ZOO.md")) as handle:
        zoo = handle.read()
    for name, asset in split.items():
        assert all(f"({BASE}/{part})" in zoo for part in asset["parts"])
        assert f"({BASE}/{name})" not in zoo
    assert "cat" in zoo and f"over {PART_SIZE} bytes ship as numbered parts" in zoo
    with open(os.path.join(release_dir, f"{TINY_FT}.md")) as handle:
        assert f"cat {TINY_FT}.keras.part-* > {TINY_FT}.keras" in handle.read()
    assert verify_release(release_dir) == []


@pytest.fixture
def split_copy(split_release, tmp_path):
    copy = str(tmp_path / "split")
    shutil.copytree(split_release[0], copy)
    return copy


def _parts_of(release_dir, name):
    return _manifest(release_dir)["assets"][name]["parts"]


@pytest.mark.parametrize("damage", ["flipped", "deleted", "extra", "unlisted"])
def test_a_damaged_missing_or_extra_part_is_one_problem_line_naming_it(split_copy, damage):
    name = f"{TINY_FT}.keras"
    parts = _parts_of(split_copy, name)
    second = os.path.join(split_copy, parts[1])
    if damage == "flipped":
        _flip_byte(second)
        expected = f"{parts[1]}: sha256 differs from SHA256SUMS"
    elif damage == "deleted":
        os.remove(second)
        expected = f"{parts[1]}: listed in SHA256SUMS but missing"
    elif damage == "extra":
        extra = f"{name}.part-{len(parts) + 1:03d}-of-{len(parts) + 1:03d}"
        shutil.copyfile(second, os.path.join(split_copy, extra))
        expected = (f"{extra}: not a part of {name} in the manifest ({len(parts)} parts); "
                    f"remove it or rebuild the release with scripts/release.py build")
    else:  # the part gone from the folder and from SHA256SUMS, which is signed again
        os.remove(second)
        write_sha256sums(split_copy)
        expected = (f"{parts[1]}: a part of {name} in the manifest, not listed in SHA256SUMS; "
                    f"rebuild the release with scripts/release.py build")
    assert verify_release(split_copy) == [expected]


def test_parts_that_join_to_another_file_are_reported_by_the_whole_digest(split_copy):
    """Parts re-signed in SHA256SUMS still have to join to the manifest's whole file."""
    name = f"{TINY_FT}.weights.h5"
    _flip_byte(os.path.join(split_copy, _parts_of(split_copy, name)[0]))
    write_sha256sums(split_copy)
    assert verify_release(split_copy) == [
        f"{name}: its parts joined are not the file the manifest records (bytes and sha256); "
        f"rebuild the release with scripts/release.py build"]


def test_the_recheck_and_publish_join_the_parts_of_an_asset(split_release, tmp_path):
    """What ``verify --recheck`` hands the fresh process and ``publish`` unpacks: the parts
    joined (checked in this process here; the slow tier rechecks the whole split release)."""
    from converter.release import whole_asset

    release_dir, manifest, _ = split_release
    name = f"{TINY_FT}.keras"
    joined = whole_asset(release_dir, name, manifest["assets"][name], str(tmp_path))
    assert _sha256(joined) == manifest["assets"][name]["sha256"]
    errors = check_assets(os.path.join(release_dir, f"{TINY_FT}.json"), {"keras": joined})
    assert errors["keras"] <= TOLERANCE
    plan = publish_release(release_dir, "hf://org", dry_run=str(tmp_path / "dry"),
                           log=lambda line: None)
    assert sorted(plan) == [f"hf://org/{n}" for n in sorted(NAMES)]


@pytest.mark.slow  # two fresh processes; fast tier: the test above (joined, checked in-process)
def test_verify_recheck_passes_on_a_release_in_parts(split_release):
    assert verify_release(split_release[0], recheck=True) == []


@pytest.mark.parametrize("size", ["0", "-5MiB", "1.5GB", "12 parsecs", "lots", ""])
def test_a_bad_part_size_is_one_line_and_exit_two(conversions, tmp_path, size):
    done = _script_in_process("build", conversions[0], str(tmp_path / "out"), "--base-url",
                              BASE_URL, "--part-size", size)
    line = assert_one_line_error(done, 2)
    assert line.startswith("error: --part-size: expected a positive whole number of bytes")
    assert repr(size) in line and not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("base_url, found", [
    ("github.com/me/zoo/releases/download/v1", "found no scheme"),
    ("ftp://example.org/zoo", "found scheme 'ftp'"),
    ("https:///zoo/v1", "expected a URL with a host, found none")])
def test_a_base_url_that_is_no_download_url_is_one_line_and_exit_two(conversions, tmp_path,
                                                                     base_url, found):
    """A --base-url without its scheme (or host) is refused before any work (before: the
    release was built with relative links in the manifest, MODEL_ZOO.md and cards, and, its
    host unknown, a GitHub release's assets were not split under GitHub's 2 GiB)."""
    done = _script_in_process("build", conversions[0], str(tmp_path / "out"), "--base-url",
                              base_url)
    line = assert_one_line_error(done, 2)
    assert line.startswith(f"error: --base-url {base_url}: expected ") and found in line
    assert line.endswith("e.g. https://github.com/ORG/REPO/releases/download/v0.1.0")
    assert not os.path.exists(tmp_path / "out") and _leftovers(str(tmp_path)) == []


def test_the_part_size_defaults_to_under_the_hosts_limit():
    from converter.release import host_part_size, parse_part_size

    assert host_part_size("https://github.com/me/zoo/releases/download/v1") == 2 * 2**30 - 1
    assert host_part_size(BASE_URL) is None
    assert parse_part_size("1900MiB") == 1900 * 2**20
    assert parse_part_size("2GB") == 2 * 10**9 and parse_part_size("65536") == 65536


def _served_split(split_release, tmp_path, monkeypatch):
    """A copy of the split release to serve, the cache at ``tmp_path/cache``, online."""
    served = str(tmp_path / "served")
    shutil.copytree(split_release[0], served)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    for name in ("VIDEOMAE_OFFLINE", "VIDEOMAE_CONVERT_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return served


def _cache_files(tmp_path):
    return sorted(name for _, _, files in os.walk(tmp_path / "cache") for name in files)


def test_a_zoo_name_loads_the_same_model_from_a_release_in_parts(split_release, release,
                                                                  tmp_path, monkeypatch):
    """A zoo name served (loopback HTTP) from a release whose weights ship in parts, or read
    from such a release folder, loads the model the unsplit release gives, weight for
    weight; the parts are dropped from the cache once joined; offline, the joined copy
    serves."""
    import tf_models
    from http_faults import FaultServer

    served = _served_split(split_release, tmp_path, monkeypatch)
    weights = f"{TINY_FT}.weights.h5"
    parts = split_release[1]["assets"][weights]["parts"]

    def load(base, **options):
        monkeypatch.setenv("VIDEOMAE_ZOO_URL", base)
        model = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False,
                                                              **options)
        return [np.asarray(w) for w in model.get_weights()]

    whole = load(release[0])
    with FaultServer(served) as server:
        base = server.url("").rstrip("/")
        from_parts = load(base)
        assert [p.lstrip("/") for p, _ in server.requests] == ["SHA256SUMS", "manifest.json",
                                                              *parts]
    assert len(whole) == len(from_parts) and all(
        np.array_equal(a, b) for a, b in zip(whole, from_parts))
    assert _cache_files(tmp_path) == sorted(["SHA256SUMS", "SHA256SUMS.sha256",
                                             "manifest.json", "manifest.json.sha256",
                                             weights, f"{weights}.sha256"])
    offline = load(base, offline=True)  # the server is gone: the joined copy, verified
    assert all(np.array_equal(a, b) for a, b in zip(whole, offline))
    in_folder = load(served)  # a release folder: parts read in place, joined into the cache
    assert all(np.array_equal(a, b) for a, b in zip(whole, in_folder))


def test_a_download_stopped_between_parts_resumes_and_a_cut_join_restarts(
        split_release, tmp_path, monkeypatch):
    """A transfer cut inside the second part: the first part is already appended to the
    ``.joining`` file and dropped; the next call fetches neither the manifest nor the first
    part again and resumes the second with Range; a join whose ``.joining`` file does not
    show its record's sha256 restarts from the first part (tests/test_artifact_download.py
    covers each way a join is cut); nothing unverified is ever under the asset's name."""
    from http_faults import FaultServer
    from tf_models.artifacts.resolve import PresetError, fetch_asset

    name = f"{TINY_FT}.weights.h5"
    parts = split_release[1]["assets"][name]["parts"]
    with FaultServer(_served_split(split_release, tmp_path, monkeypatch)) as server:
        base = server.url("").rstrip("/")
        server.plan("ok", "ok", "ok", "drop:1000")  # sums, manifest, part 1, part 2 cut
        with pytest.raises(PresetError, match=f"{parts[1]}: download stopped at 1000 of "):
            fetch_asset(base, name, progress=False)
        cached = _cache_files(tmp_path)
        assert parts[0] not in cached and f"{parts[1]}.part" in cached and name not in cached
        assert f"{name}.joining" in cached and f"{name}.joining.json" in cached
        folder = os.path.dirname(next(os.path.join(root, f) for root, _, files
                                      in os.walk(tmp_path / "cache") for f in files))
        server.requests.clear()
        path = fetch_asset(base, name, progress=False)
        assert server.requests == [("/SHA256SUMS", None), (f"/{parts[1]}", "bytes=1000-")] + [
            (f"/{part}", None) for part in parts[2:]]
        os.remove(path)
        os.remove(f"{path}.sha256")
        with open(os.path.join(folder, f"{name}.joining"), "wb") as handle:
            handle.write(b"a join cut short")
        server.requests.clear()
        assert fetch_asset(base, name, progress=False) == path
        assert server.requests == [("/SHA256SUMS", None)] + [(f"/{part}", None)
                                                             for part in parts]
    assert path == os.path.join(folder, name)
    assert _sha256(path) == split_release[1]["assets"][name]["sha256"]
    assert not any(".part" in n or ".joining" in n for n in _cache_files(tmp_path))
