"""The one resolver behind every ``--model`` and ``from_preset``: a zoo name, a ``.keras`` or
``.weights.h5`` file, a SavedModel folder, a release folder or a release URL, a keras-hub
preset folder or handle (``hf://ORG/NAME``, ``kaggle://OWNER/MODEL/keras/VARIATION``), a
transformers-format VideoMAE folder or ``hf://`` repository -> a verified local artifact
(``resolve_artifact``) -> a loaded model (``load_artifact``).

keras-hub presets are opened by keras-hub's own ``from_preset`` machinery (its loaders, its
Hugging Face and Kaggle clients and their caches; ``HF_ENDPOINT`` and the clients' other
settings apply), after ``tf_models.kerashub_presets.check_kerashub_preset`` has checked that
their configs name only this package's registered classes, in Keras's safe mode, and
``check_preset_sizes`` that their sizes are what their weights show.
Transformers-format models (``config.json`` with a ``model_type``, safetensors weights) are
converted on the fly as ``from_preset`` converts them (``tf_models.transformers_format``).

A zoo name resolves against the published release (``VIDEOMAE_ZOO_URL`` overrides the base
URL: an ``http(s)://`` or ``file://`` URL, or a local folder). Release assets are fetched by
the one downloader (``download.fetch_file``) into the ``release`` cache, checked against the
release's ``SHA256SUMS`` before they are used and on every later use. An asset the release
ships in parts (``parts``: ``NAME.part-001-of-003``...) is fetched part by part the same way,
appended to the whole file in the cache as it comes and dropped (the whole and one part on
disk at most), the whole checked against its sha256 in the release's ``manifest.json``.
No download takes more bytes than its file may have: an asset the size the manifest records
(fetched before the first asset), a part its whole file's, the lists ``LIST_MAX_BYTES``,
anything else ``download.MAX_BYTES``.
Offline mode
(``offline=True`` or ``VIDEOMAE_OFFLINE=1``...) never downloads. The report ``NAME.json``
beside an artifact, when there, is read as the typed record. Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from ..kerashub_presets import HANDLE_PREFIXES, is_kerashub_preset, preset_files_missing
from ..presets import DEFAULT_ZOO_URL, Preset, get_preset
from . import download
from .checksums import SUMS, ChecksumError, is_plain_name, parse_sums, read_sums, sha256_file
from .names import LITERT_KINDS, SUFFIXES, entry_name, kind_of_path, report_path
from .parts import JoinDamaged, SplitAsset, join_parts, parts_listed, whole_names
from .record import ConversionRecord, RecordError, load_report

URL_ENV = "VIDEOMAE_ZOO_URL"
CACHE_STORE = "release"
MANIFEST = "manifest.json"  # a release's record of its assets (the whole files of parts)
# The most bytes the release's lists (SHA256SUMS, manifest.json) may have: a few KB each, read
# whole into memory, so a server that sends more is refused early (``download.MAX_BYTES``,
# the ceiling for a model file, would let them take gigabytes).
LIST_MAX_BYTES = 16 << 20
# the addresses a release is fetched from (anything else is a local folder)
URL_SCHEMES = download.WEB_SCHEMES + ("file",)
# the Keras class a ``.weights.h5`` file was saved from, by a key only its config has
# (registered names: no import of the model modules here)
WEIGHTS_CLASSES = (("num_classes", "VideoMAEVideoClassifier"),
                   ("decoder_embed_dim", "VideoMAEMaskedAutoencoder"))


class PresetError(ValueError):
    """A preset that cannot be resolved, downloaded or verified: one line, naming the file."""


@dataclass
class Resolved:
    """What a model argument resolved to: a local, verified artifact and what is known of it."""

    path: str
    kind: str                         # "keras", "weights", "savedmodel", "kerashub",
    #                                   "transformers", or "config" (a zoo row's, no file)
    preset: Optional[Preset]
    config: Optional[dict] = None     # model config (for a .weights.h5 file)
    report: Optional[ConversionRecord] = None
    name: str = ""                    # the entry name (NAME of NAME.keras ...)


@dataclass
class SavedModelSignature:
    """A SavedModel's ``serving_default``: its inputs' specs and its outputs' names."""

    serve: Callable
    inputs: Dict[str, object]         # name -> tf.TensorSpec
    outputs: Dict[str, object]        # name -> tf.TensorSpec
    keep_alive: object                # the loaded object graph the signature needs

    @property
    def takes_raw_frames(self) -> bool:
        """Whether ``video`` is uint8 frames (converted with ``--raw-frames``: the
        preprocessing is inside) rather than normalised float32."""
        video = self.inputs.get("video")
        return video is not None and getattr(video.dtype, "name", "") == "uint8"

    def raw_frames_refusal(self, path: str) -> str:
        """The one line the video tools give for a raw-frames SavedModel (they normalise
        frames themselves)."""
        return (f"{path}: this SavedModel takes raw uint8 frames (converted with "
                f"--raw-frames, for serving); give the video tools the .keras file beside it "
                f"or a SavedModel converted without --raw-frames")


def zoo_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_ZOO_URL


def cache_dir() -> str:
    """The release asset cache: ``$VIDEOMAE_CACHE`` or ``~/.cache/videomae-keras``."""
    return download.cache_dir(CACHE_STORE)


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in URL_SCHEMES


def _join(base: str, name: str) -> str:
    if _is_url(base):
        return base.rstrip("/") + "/" + urllib.parse.quote(name)
    return os.path.join(base, name)


def _base_cache(base: str) -> str:
    """One cache subfolder per release location, so two releases never share a name."""
    tag = hashlib.sha256(base.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), tag)


def _fetch(url: str, dest: str, sha256: Optional[str], offline: bool, progress: bool,
           force: bool = False, max_bytes: Optional[int] = None) -> str:
    """``download.fetch_file`` with its errors as one PresetError line. A cached copy that
    no longer matches the release's list is stale (a re-published asset, or a changed file):
    fetched again online, refused offline. ``max_bytes``: the most the file may have (else
    ``download.MAX_BYTES``)."""
    try:
        try:
            return download.fetch_file(url, dest, sha256, offline=offline, progress=progress,
                                       force=force, max_bytes=max_bytes)
        except download.CachedFileChanged:
            if offline:
                raise
            return download.fetch_file(url, dest, sha256, offline=False, progress=progress,
                                       force=True, max_bytes=max_bytes)
    except download.OfflineError:
        raise PresetError(f"{dest}: not cached, and offline mode never downloads; run once "
                          f"online or unset {download.OFFLINE_ENVS[0]}") from None
    except download.DownloadDamaged as error:
        raise PresetError(f"{url}: {error.problem}, not the file listed in {SUMS}; the file is "
                          f"corrupt or was tampered with, nothing was cached") from None
    except download.DownloadError as error:
        raise PresetError(f"{error}; check the network, the release URL (${URL_ENV}) or that "
                          f"{os.path.basename(dest)} was published, or use offline mode with "
                          f"a filled cache") from None
    except OSError as error:  # the cache folder cannot be made or written
        raise PresetError(f"{os.path.dirname(dest)}: cannot use it as the model cache "
                          f"({error.strerror or error}); set {download.CACHES[CACHE_STORE][0]} "
                          f"to a writable folder, or read a filled read-only one offline "
                          f"({download.OFFLINE_ENVS[0]}=1)") from None


def fetch_sums(base: str, offline: bool, progress: bool) -> Dict[str, str]:
    """The release's checksums: read in place for a local folder, else fetched from the URL
    (always afresh online: a re-published release must not verify against stale sums)."""
    try:
        if not _is_url(base):
            path = os.path.join(base, SUMS)
            if not os.path.exists(path):
                raise PresetError(f"{path}: missing; a release folder lists its assets' sha256 "
                                  f"there (scripts/release.py build writes it); for one model "
                                  f"of a conversion's folder, pass its NAME.keras file")
            return read_sums(path)
        cached = os.path.join(_base_cache(base), SUMS)
        if not offline and not _writable(os.path.dirname(cached)):
            # a read-only cache (shared, mounted): the list, fetched afresh, goes to a scratch
            # folder; the assets are still read (verified) from the cache
            scratch = tempfile.mkdtemp(prefix="videomae-sums-")
            try:
                return read_sums(_fetch(_join(base, SUMS), os.path.join(scratch, SUMS), None,
                                        False, False, max_bytes=LIST_MAX_BYTES))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        _fetch(_join(base, SUMS), cached, None, offline, False, force=not offline,
               max_bytes=LIST_MAX_BYTES)
        return read_sums(cached)
    except ChecksumError as error:
        raise PresetError(str(error)) from None


def _writable(folder: str) -> bool:
    """Whether this process can create ``folder`` (if absent) and write in it."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def fetch_asset(base: str, name: str, offline: Optional[bool] = None,
                progress: bool = True) -> str:
    """A verified local copy of release asset ``name`` under ``base``; downloads if needed."""
    offline = download.is_offline(offline)
    if not is_plain_name(name):  # joined to the cache folder below: never a path
        raise PresetError(f"{name!r}: not an asset name (a path); a release's assets are files "
                          f"of its own folder")
    return _fetch_listed(base, name, fetch_sums(base, offline, progress), offline, progress)


def _fetch_listed(base: str, name: str, sums: Dict[str, str], offline: bool,
                  progress: bool, max_bytes: Optional[int] = None) -> str:
    """``fetch_asset`` with the release's checksums ``sums`` already read; ``max_bytes``:
    the most the file may have, when known (else the bytes ``manifest.json`` records for it,
    the manifest itself ``LIST_MAX_BYTES``, anything else ``download.MAX_BYTES``)."""
    if name not in sums:
        try:
            parts = parts_listed(sums, name)
        except ValueError as error:
            raise PresetError(f"{_join(base, SUMS)}: {error}; the release is incomplete, "
                              f"publish every part") from None
        if parts is None:
            raise PresetError(f"{_join(base, SUMS)}: lists no {name}; the release does not "
                              f"publish it")
        return _fetch_joined(base, name, parts, sums, offline, progress)
    if not _is_url(base):
        return _in_folder(base, name, sums)
    dest = os.path.join(_base_cache(base), name)
    if max_bytes is None and name == MANIFEST:
        max_bytes = LIST_MAX_BYTES
    elif max_bytes is None and MANIFEST in sums and not offline and not os.path.isfile(dest):
        max_bytes = _manifest_bytes(base, name, sums, progress)  # only before a download
    return _fetch(_join(base, name), dest, sums[name], offline, progress, max_bytes=max_bytes)


def _manifest_bytes(base: str, name: str, sums: Dict[str, str],
                    progress: bool) -> Optional[int]:
    """The size the release's ``manifest.json`` records for asset ``name``; None where it
    records none (a part, ``MODEL_ZOO.md``)."""
    try:
        with open(_fetch_listed(base, MANIFEST, sums, False, progress),
                  encoding="utf-8") as handle:
            manifest = json.load(handle)
    except PresetError:  # its download's own line (a PresetError is a ValueError)
        raise
    except (OSError, ValueError) as error:  # json's errors are ValueErrors
        raise PresetError(f"{_join(base, MANIFEST)}: {str(error).splitlines()[0]}; the release "
                          f"records its assets' sizes there, rebuild it") from None
    assets = manifest.get("assets") if isinstance(manifest, dict) else None
    asset = assets.get(name) if isinstance(assets, dict) else None
    size = asset.get("bytes") if isinstance(asset, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def _in_folder(base: str, name: str, sums: Dict[str, str]) -> str:
    """The file ``name`` of the release folder ``base``, read in place once it matches
    ``sums``."""
    path = os.path.join(base, name)
    if not os.path.exists(path):
        raise PresetError(f"{path}: missing, though {SUMS} lists it")
    found = sha256_file(path)
    if found != sums[name]:
        raise PresetError(f"{path}: sha256 {found} does not match {sums[name]} in {SUMS}; "
                          f"the file is corrupt or was changed")
    return path


def _fetch_joined(base: str, name: str, parts, sums: Dict[str, str], offline: bool,
                  progress: bool) -> str:
    """A verified local copy of asset ``name``, which the release ships as ``parts``: the
    cached joined copy, or each part in turn fetched (resumable, checked against
    ``SHA256SUMS``; read in place from a release folder; none may be larger than the whole
    the manifest records), appended to the whole file's
    temporary name in the cache and dropped (``join_parts``: the cache holds the growing
    whole and one part), the whole checked against its sha256 in the release's manifest."""
    whole = _split_record(base, name, parts, sums, offline, progress)
    dest = os.path.join(_base_cache(base), name)
    if os.path.isfile(dest):
        try:
            return download.cached_copy(dest, whole.sha256)
        except download.CachedFileChanged as error:
            if offline:
                raise PresetError(f"{error}; offline mode never downloads a fresh copy"
                                  ) from None
            for stale in (dest, dest + ".sha256"):  # joined again from fresh parts below
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
    def drop(part: str) -> None:  # appended to the whole: the cached part is not needed again
        for done in (os.path.join(_base_cache(base), part),
                     os.path.join(_base_cache(base), part) + ".sha256"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(done)

    try:
        join_parts(parts, dest, whole.sha256, whole.bytes,
                   fetch=lambda part: _fetch_listed(base, part, sums, offline, progress,
                                                    max_bytes=whole.bytes),
                   drop=drop if _is_url(base) else None)
    except JoinDamaged as error:
        raise PresetError(f"{error} ({_join(base, MANIFEST)}); the release is inconsistent, "
                          f"rebuild it") from None
    except OSError as error:
        raise PresetError(f"{os.path.dirname(dest)}: cannot use it as the model cache "
                          f"({error.strerror or error}); set {download.CACHES[CACHE_STORE][0]} "
                          f"to a writable folder") from None
    return dest


def _split_record(base: str, name: str, parts, sums: Dict[str, str], offline: bool,
                  progress: bool) -> SplitAsset:
    """What the release's manifest records of asset ``name`` shipped as ``parts``."""
    where = _join(base, MANIFEST)
    try:
        with open(_fetch_listed(base, MANIFEST, sums, offline, progress),
                  encoding="utf-8") as handle:
            whole = SplitAsset.from_manifest(json.load(handle), name)
    except (OSError, ValueError) as error:  # json's errors are ValueErrors
        raise PresetError(f"{where}: {str(error).splitlines()[0]}; the release ships {name} in "
                          f"parts and needs its manifest to check them joined") from None
    if whole.parts != list(parts):
        raise PresetError(f"{where}: lists {len(whole.parts)} parts of {name}, {SUMS} "
                          f"{len(parts)}; the release is inconsistent, rebuild it")
    return whole


# --- resolving a model argument -------------------------------------------------------------

def _preset_for(name: str) -> Optional[Preset]:
    try:
        return get_preset(name)
    except KeyError:
        return None


def _report_beside(path: str) -> Optional[ConversionRecord]:
    try:
        return load_report(path)
    except RecordError as error:
        raise PresetError(str(error)) from None


def _single_entry(names, where: str) -> str:
    suffix = SUFFIXES["weights"]
    weights = sorted(n[: -len(suffix)] for n in whole_names(names) if n.endswith(suffix))
    if len(weights) != 1:
        listed = ", ".join(weights) if weights else "none"
        raise PresetError(f"{where}: holds {len(weights)} entries ({listed}); pass a zoo name "
                          f"with {URL_ENV} set to this release instead")
    return weights[0]


def resolve_artifact(spec: str, offline: Optional[bool] = None,
                     progress: bool = True, weights: bool = True) -> Resolved:
    """A local, verified artifact for ``spec``: a zoo name, a release folder (one entry) or
    URL, a ``.keras`` / ``.weights.h5`` path or URL, or a SavedModel folder; a keras-hub
    preset folder or handle is passed through as kind ``kerashub`` (keras-hub fetches it), a
    transformers-format folder or ``hf://`` repository as kind ``transformers``. A zoo name
    without ``weights`` (``from_preset(..., load_weights=False)``) is its row's config, kind
    ``config``: nothing is fetched."""
    from ..transformers_format import is_transformers_preset

    spec = os.fspath(spec)
    # before keras-hub's: an hf:// handle may be either (offline: as the cache says)
    if is_transformers_preset(spec, offline):
        return Resolved(spec, "transformers", None, name=_handle_name(spec))
    if is_kerashub_preset(spec):  # opened (and fetched) by keras-hub when loaded
        name = _handle_name(spec)
        return Resolved(spec, "kerashub", _preset_for(name), name=name)
    if os.path.isdir(spec):
        if kind_of_path(spec) == "savedmodel":
            return _described(spec, "savedmodel")
        if not os.path.exists(os.path.join(spec, SUMS)):  # not a release: a broken config?
            from ..transformers_format import config_problem

            problem = config_problem(spec) or preset_files_missing(spec)
            if problem is not None:
                raise PresetError(problem)
        sums = fetch_sums(spec, True, progress)
        return _from_release(spec, _single_entry(sums, spec), offline, progress)
    if os.path.isfile(spec):
        return _from_file(spec)
    if _is_url(spec):
        if spec.endswith("/"):
            sums = fetch_sums(spec, download.is_offline(offline), progress)
            return _from_release(spec, _single_entry(sums, spec), offline, progress)
        base, _, name = spec.rpartition("/")
        name = urllib.parse.unquote(name)
        return _from_file(fetch_asset(base, name, offline, progress), entry_name(name))
    found = _preset_for(spec)
    if found is None:
        if spec.endswith((".keras", ".h5")) or os.sep in spec:
            raise PresetError(f"{spec}: no such file")
        raise PresetError(f"{spec}: not a zoo preset, file, folder or URL; zoo presets are "
                          f"named like TFVideoMAE_B_K400_16x224_FT")
    if not weights:
        return Resolved(_join(zoo_url(), found.name + SUFFIXES["weights"]), "config", found,
                        found.model_config(), name=found.name)
    return _from_release(zoo_url(), found.name, offline, progress)


def preset_named(spec: str) -> Optional[Preset]:
    """The zoo row a preset folder or handle is named after (its last segment), or None."""
    return _preset_for(_handle_name(os.fspath(spec)))


def model_name(spec: str) -> str:
    """The NAME of a model argument: a hub handle's entry (``_handle_name``: the variation of
    a Kaggle handle, not its version), else the file's or folder's (``names.entry_name``)."""
    spec = os.fspath(spec)
    return _handle_name(spec) if spec.startswith(HANDLE_PREFIXES) else entry_name(spec)


def _handle_name(spec: str) -> str:
    """The entry name of a preset folder or handle: its last segment (``hf://ORG/NAME``), or
    the variation of a Kaggle handle (``kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]``)."""
    parts = [p for p in spec.split("://")[-1].split("/") if p]
    if spec.startswith("kaggle://") and len(parts) >= 4:
        return parts[3]
    return parts[-1] if parts else spec


def _described(path: str, kind: str, name: Optional[str] = None,
               report: Optional[ConversionRecord] = None) -> Resolved:
    report = report or _report_beside(path)
    name = (report.name if report else None) or name or entry_name(path)
    return Resolved(path, kind, _preset_for(name), report=report, name=name)


def _from_release(base: str, name: str, offline, progress) -> Resolved:
    path = fetch_asset(base, name + SUFFIXES["weights"], offline, progress)
    preset = _preset_for(name)
    report = None
    if preset is None:  # an entry the zoo table does not know: its report says what it is
        try:
            report = ConversionRecord.load(fetch_asset(base, name + SUFFIXES["report"],
                                                       offline, progress))
        except RecordError as error:
            raise PresetError(str(error)) from None
    config = (preset.model_config() if preset is not None
              else _config_of(report, _join(base, name + SUFFIXES["report"])))
    return Resolved(path, "weights", preset, config, report, name)


def _config_of(report: ConversionRecord, where: str) -> dict:
    """The model config ``report`` (read from ``where``) records: PresetError, naming the
    file, when it records none."""
    try:
        return report.model_config
    except RecordError as error:
        raise PresetError(f"{where}: {error}; the report is damaged") from None


def _from_file(path: str, name: Optional[str] = None) -> Resolved:
    kind = kind_of_path(path)
    if kind == "keras":
        return _described(path, "keras", name)
    if kind in LITERT_KINDS:
        raise PresetError(f"{path}: a LiteRT file runs in the LiteRT interpreter (README, "
                          f"\"Deploy with LiteRT\"); pass the {entry_name(path)}"
                          f"{SUFFIXES['keras']} beside it")
    if kind != "weights":
        raise PresetError(f"{path}: expected a .keras or .weights.h5 file, a SavedModel or "
                          f"release folder, or a zoo name")
    resolved = _described(path, "weights", name)
    if resolved.report is not None:
        resolved.config = _config_of(resolved.report, report_path(path))
    elif resolved.preset is not None:
        resolved.config = resolved.preset.model_config()
    else:
        raise PresetError(f"{path}: no NAME.json report beside it and {resolved.name!r} is not a "
                          f"zoo name, so its dimensions are unknown; keep the report next to "
                          f"the weights or build the model yourself and call load_weights")
    return resolved


# --- a config's sizes against its weights' shapes, before anything is built --------------

# Where a ``.weights.h5`` shows a size of its report's ``model_config``, in keras-hub's layout
# and the old one (``tf_models.legacy``): (key, dataset path, axis of its shape). Keras names
# a list's layers by class (block, block_1...); the patch embedding's kernel is (tubelet,
# patch, patch, channels, width), a classifier's head ``dense`` (``head`` in the old layout).
MLP_WIDTH = "int(embed_dim * mlp_ratio)"
_ENCODER = r"(?:(?!decoder/)[^/]+/)*"       # any folders but the decoder's
_PATCH_KERNEL = r"(?:.*/)?patch_embed/proj/vars/0"
WEIGHTS_SIZE_EVIDENCE = (
    ("embed_dim", _PATCH_KERNEL, 4),
    ("tubelet_size", _PATCH_KERNEL, 0),
    ("patch_size", _PATCH_KERNEL, 1),
    ("in_chans", _PATCH_KERNEL, 3),
    (MLP_WIDTH, _ENCODER + r"block(?:_\d+)?/mlp/fc1/vars/0", 1),
    ("num_classes", r"(?:layers/dense|head)/vars/0", 1),
    ("decoder_embed_dim", r"(?:.*/)?encoder_to_decoder/vars/0", 1),
)
WEIGHTS_BLOCK_COUNTS = (("depth", _ENCODER + r"block(?:_(\d+))?/"),
                        ("decoder_depth", r"(?:[^/]+/)*decoder/(?:[^/]+/)*block(?:_(\d+))?/"))


def check_config_sizes(said: dict, shapes: Dict[str, tuple], evidence, block_counts,
                       where: str, weights: str, hint: str, count_absent: bool = False) -> None:
    """PresetError where a size a config gives (``said``: key -> value; keys it lacks are not
    checked) is not what the weights' shapes show: ``evidence`` (key, name pattern, axis of
    the first matching array's shape), ``block_counts`` (key, pattern whose group 1 is a
    block's index, none for block 0: the highest + 1; with ``count_absent`` no block counts
    as 0). A config is a file from the internet: sizes it alone gave could ask for gigabytes
    of variables before the weights were compared, so this runs before any model is built."""
    for key, pattern, axis in evidence:
        found = next(((name, shape) for name, shape in shapes.items()
                      if re.fullmatch(pattern, name) and len(shape) > axis), None)
        if key in said and found is not None and found[1][axis] != said[key]:
            _size_refused(where, key, said[key], found[1][axis],
                          f"{found[0]} {tuple(found[1])}", weights, hint)
    for key, pattern in block_counts:
        indices = [int(m.group(1) or 0) for m in map(re.compile(pattern).match, shapes) if m]
        if key in said and (indices or count_absent) and \
                max(indices, default=-1) + 1 != said[key]:
            _size_refused(where, key, said[key], max(indices, default=-1) + 1,
                          f"blocks up to {max(indices)}" if indices else "no blocks",
                          weights, hint)


def _size_refused(where: str, key: str, said, found: int, evidence: str, weights: str,
                  hint: str):
    from ..layers import DefaultSize, GivenSize, shown

    if isinstance(said, GivenSize):  # the file lacks it, the call gave it: the call is wrong
        given = f"{key} is absent, and from_preset was given {key}={said}"
        hint = f"pass {key}={found}, the size of the stored layers"
    elif isinstance(said, DefaultSize):
        given = f"{key} is absent, so the constructor's default {said}"
    else:
        given = f"{key} is {shown(said)}"
    raise PresetError(f"{where}: {given}, but the weights have {found} "
                      f"({evidence} in {os.path.basename(weights)}); {hint}")


def _report_sizes(config: dict, cls=None, with_backbone: bool = True) -> dict:
    """The integer sizes of a report's ``model_config`` that its weights show (values of
    other types are left to the model's constructor, which refuses them); with ``cls``, the
    class it builds, a key it lacks at the constructor's default (``layers.config_defaults``;
    ``with_backbone``: its backbone's too)."""
    from ..layers import config_defaults

    def integer(value):
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(config, dict):  # a serialised config's: its constructor refuses it
        return {}
    if cls is not None:
        config = {**config_defaults(cls, with_backbone), **config}
    said = {k: v for k, v in config.items() if integer(v)}
    ratio = config.get("mlp_ratio")
    if integer(config.get("embed_dim")) and isinstance(ratio, (int, float)) \
            and not isinstance(ratio, bool) and math.isfinite(ratio):
        try:
            said[MLP_WIDTH] = int(config["embed_dim"] * ratio)
        except OverflowError:  # no float holds it: embed_dim or mlp_ratio is refused anyway
            pass
    return said


def serialized_sizes(config) -> Tuple[dict, dict]:
    """(the backbone's sizes, the task's own sizes) a serialised Keras config gives (a
    ``.keras`` archive's or a keras-hub preset's ``config.json``, a preset's ``task.json``;
    the old class names' configs nest the same way): a task's ``config`` holds its own
    (``num_classes``, ``decoder_embed_dim``, ``decoder_depth``...) and its backbone's config
    under ``backbone``; a backbone's are at its top level, its task sizes none. A key a
    config of one of this package's classes lacks is its constructor's default
    (``layers.config_defaults``), the size the model would be built at."""
    inner = config.get("config") if isinstance(config, dict) else None
    if not isinstance(inner, dict):
        return {}, {}
    backbone = inner.get("backbone")
    if not isinstance(backbone, dict):  # a backbone, or a task that builds its backbone
        # (a "backbone" of another type its constructor refuses: no defaults to read)
        return _report_sizes(inner, _serialized_class(config) if backbone is None else None), {}
    return (_report_sizes(backbone.get("config"), _serialized_class(backbone)),
            _report_sizes({k: v for k, v in inner.items() if k != "backbone"},
                          _serialized_class(config), with_backbone=False))


def _serialized_class(config: dict):
    """The class of this package a serialised config names (``registered_name``), or None."""
    import keras

    from ..layers import PACKAGE

    name = config.get("registered_name") if isinstance(config, dict) else None
    if not (isinstance(name, str) and name.startswith(PACKAGE + ">")):
        return None
    cls = keras.saving.get_registered_object(name)
    return cls if isinstance(cls, type) else None


def check_weights_sizes(said: dict, shapes: Dict[str, tuple], where: str, weights: str,
                        hint: str) -> None:
    """``check_config_sizes`` for a Keras weights file of this package's models (a
    ``.weights.h5``, a ``.keras`` archive's, a preset's ``model.weights.h5`` or
    ``task.weights.h5``): ``WEIGHTS_SIZE_EVIDENCE``; a block count the config gives is
    checked even where the file holds no blocks (each such file holds every block of what
    it saved). First the sizes no weight shows (a clip's: ``img_size``, ``num_frames``; the
    heads) are checked as the models' constructors check them (``layers.check_model_sizes``:
    positive, whole patches, heads that split the width, at most ``MAX_TOKENS`` tokens)."""
    from ..layers import check_model_sizes

    try:
        check_model_sizes(said)
    except ValueError as error:
        raise PresetError(f"{where}: {error}; {hint}") from None
    check_config_sizes(said, shapes, WEIGHTS_SIZE_EVIDENCE, WEIGHTS_BLOCK_COUNTS, where,
                       weights, hint, count_absent=True)


# --- loading what it resolved to --------------------------------------------------------------

# what Keras's deserialisation puts before the error a constructor raised, after a preamble
# and the whole config (``serialization_lib``): the cause is what follows its last one
KERAS_CAUSE = "Exception encountered:"


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    if KERAS_CAUSE in text:
        text = text.rsplit(KERAS_CAUSE, 1)[1].strip()
    return text[:200] if text else repr(error)


def load_keras_model(resolved: Resolved, offline: Optional[bool] = None,
                     load_weights: bool = True, given: Optional[dict] = None):
    """The Keras model stored in ``resolved`` (a ``.keras`` file, or a ``.weights.h5`` file
    built from its config); PresetError for a SavedModel, which holds a traced graph. Files
    written under the old class names or weight layouts load too (``tf_models.legacy``);
    Keras's safe mode stays on. The sizes a ``.keras`` archive's config or a ``.weights.h5``'s
    report gives are checked against the weights' index before anything is built. A
    keras-hub preset loads through keras-hub's ``from_preset`` as the class its
    ``task.json`` (or, without one, its ``config.json``) declares, after its configs were
    checked (``kerashub_presets.load_kerashub_preset``). A
    transformers-format one is converted as ``from_preset`` converts it (``offline``: from
    the Hugging Face cache only). ``load_weights=False``: the same architecture with new
    weights, as keras-hub's ``from_preset`` gives it (a transformers-format model's
    architecture is what its tensors show: they are still read). ``given``: the arguments
    of the ``from_preset`` it serves, which a keras-hub preset's ``task.json`` may lack
    (``kerashub_presets.absent_task_args``)."""
    from ..legacy import ExtraWeights, load_model_file, load_weights_file, stored_shapes

    if resolved.kind in ("keras", "weights") and os.path.isfile(resolved.path) and \
            os.path.getsize(resolved.path) == 0:  # before: "File is not a zip file"
        raise PresetError(f"{resolved.path}: is empty (0 bytes); download or export it again")
    if resolved.kind == "savedmodel":
        raise PresetError(f"{resolved.path}: is a SavedModel, which holds a traced graph, not a "
                          f"Keras model; load it with tf.saved_model.load, or pass the .keras / "
                          f".weights.h5 file of the same entry")
    if resolved.kind == "kerashub":
        from ..kerashub_presets import load_kerashub_preset

        return load_kerashub_preset(resolved.path, offline, load_weights, given)
    if resolved.kind == "transformers":
        from ..transformers_format import load_transformers_model

        model, notes = load_transformers_model(resolved.path, offline)
        if not load_weights:
            return new_weights(model)
        model.conversion_notes = notes
        return model
    if resolved.kind == "keras":
        try:
            return load_model_file(resolved.path, load_weights)
        except PresetError:  # its config's sizes, refused before anything was built
            raise
        except ExtraWeights as error:
            raise PresetError(error.line(resolved.path, "its config.json")) from None
        except Exception as error:  # keras raises many types for a bad file
            damaged = ("; it is truncated or not a .keras archive: download or export it again"
                       if isinstance(error, zipfile.BadZipFile) else "")
            raise PresetError(f"{resolved.path}: cannot be loaded as a Keras model "
                              f"({_first_line(error)}){damaged}") from None
    config = dict(resolved.config)
    cls = _weights_class(config, resolved.path)
    if resolved.kind == "config":  # a zoo row's: new weights, no file to read
        return cls(**config)
    where = report_path(resolved.path) if resolved.report is not None else resolved.path
    try:  # the report's sizes checked against the file's index before anything is built
        shapes = stored_shapes(resolved.path)
    except OSError as error:  # h5py's, for a file that is not HDF5
        raise PresetError(f"{resolved.path}: not an HDF5 weights file ({_first_line(error)}); "
                          f"it is truncated or not a .weights.h5: download or export it "
                          f"again") from None
    if resolved.report is not None:  # a zoo entry's sizes are the zoo table's
        check_weights_sizes(_report_sizes(config, cls), shapes, where, resolved.path,
                            f"a report of another model? Keep the {os.path.basename(where)} "
                            f"saved with these weights beside them")
    try:
        model = cls(**config)
    except Exception as error:  # a value of the wrong type or range: keras raises many types
        raise PresetError(f"{where}: its model_config builds no {cls.__name__} "
                          f"({_first_line(error)}); the report is damaged or not the "
                          f"weights' own") from None
    if not load_weights:
        return model
    try:
        load_weights_file(model, resolved.path, shapes)
    except ExtraWeights as error:
        source = (f"its report {report_path(resolved.path)}" if resolved.report is not None
                  else f"zoo entry {resolved.name}")
        raise PresetError(error.line(resolved.path, source)) from None
    except Exception as error:
        raise PresetError(f"{resolved.path}: does not fit a {cls.__name__} of {config} "
                          f"({_first_line(error)})") from None
    return model


def new_weights(model):
    """A model of ``model``'s class and config with new weights (its own are not copied)."""
    return type(model).from_config(model.get_config())


def _weights_class(config: dict, path: str):
    import keras

    from ..layers import PACKAGE

    for key, class_name in WEIGHTS_CLASSES:
        if key in config:
            return keras.saving.get_registered_object(f"{PACKAGE}>{class_name}")
    raise PresetError(f"{path}: weights of an encoder-only model; load the .keras file of the "
                      f"same entry")


def load_savedmodel(path: str) -> SavedModelSignature:
    """A SavedModel folder's ``serving_default``; PresetError (one line) when it has none."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise PresetError(f"{path}: not a readable SavedModel ({_first_line(error)[:160]})"
                          ) from None
    serving = loaded.signatures.get("serving_default")
    if serving is None:
        raise PresetError(f"{path}: SavedModel has no serving_default signature")
    return SavedModelSignature(serving, dict(serving.structured_input_signature[1]),
                               dict(serving.structured_outputs), loaded)


def load_artifact(spec: str, offline: Optional[bool] = None, progress: bool = True):
    """``(resolved, model)``: ``model`` is the Keras model, or for a SavedModel folder its
    ``SavedModelSignature``."""
    resolved = resolve_artifact(spec, offline=offline, progress=progress)
    if resolved.kind == "savedmodel":
        return resolved, load_savedmodel(resolved.path)
    return resolved, load_keras_model(resolved, offline)


def artifact_report(path: str) -> Optional[ConversionRecord]:
    """The report beside ``path`` (``report_path``), or None when there is none or it does
    not load."""
    try:
        return load_report(path)
    except RecordError:
        return None


__all__ = ["PresetError", "Resolved", "SavedModelSignature", "resolve_artifact", "preset_named",
           "model_name", "load_artifact", "load_keras_model", "load_savedmodel", "fetch_asset",
           "fetch_sums", "zoo_url", "cache_dir", "parse_sums", "report_path", "artifact_report"]
