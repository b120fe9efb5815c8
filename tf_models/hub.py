"""``from_preset``: zoo names, release folders, artifact paths and URLs -> verified Keras models.

A zoo name resolves against the published release (``VIDEOMAE_ZOO_URL`` overrides the base
URL: an ``http(s)://`` or ``file://`` URL, or a local folder). Assets are downloaded once into
a cache (``VIDEOMAE_CACHE``, default ``~/.cache/videomae-keras``), checked against the
release's ``SHA256SUMS`` before they are used, and re-checked on every later use. Offline
mode (``offline=True`` or ``VIDEOMAE_OFFLINE=1``) never downloads. Nothing unverified ever
sits in the cache under an asset's name. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .presets import DEFAULT_ZOO_URL, Preset, get_preset

CACHE_ENV = "VIDEOMAE_CACHE"
URL_ENV = "VIDEOMAE_ZOO_URL"
OFFLINE_ENV = "VIDEOMAE_OFFLINE"
SUMS = "SHA256SUMS"
TIMEOUT_S = 60.0
CHUNK = 1 << 20


class PresetError(ValueError):
    """A preset that cannot be resolved, downloaded or verified: one line, naming the file."""


@dataclass
class Resolved:
    """What a preset resolved to: a local file and, where known, its zoo preset."""

    path: str
    kind: str  # "keras" or "weights"
    preset: Optional[Preset]
    config: Optional[dict] = None  # model config for a .weights.h5 file


def cache_dir() -> str:
    """The asset cache folder: ``$VIDEOMAE_CACHE`` or ``~/.cache/videomae-keras``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache",
                                                     "videomae-keras")


def zoo_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_ZOO_URL


def offline_default() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_sums(text: str, where: str) -> Dict[str, str]:
    """``SHA256SUMS`` text (``HEX  NAME`` per line, as sha256sum writes it) -> {name: hex}."""
    sums: Dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            raise PresetError(f"{where}: line {number} is not 'SHA256  NAME'")
        sums[name] = digest
    return sums


# --- where a base location lives ------------------------------------------------------------

def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


def _join(base: str, name: str) -> str:
    if _is_url(base):
        return base.rstrip("/") + "/" + urllib.parse.quote(name)
    return os.path.join(base, name)


def _base_cache(base: str) -> str:
    """One cache subfolder per release location, so two releases never share a name."""
    tag = hashlib.sha256(base.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), tag)


def download(url: str, dest: str, expected_sha256: Optional[str], progress: bool = True) -> str:
    """``url`` -> ``dest`` through a temporary file in the same folder, renamed into place only
    when complete and (if given) its sha256 matches. Raises PresetError; leaves nothing."""
    folder = os.path.dirname(dest) or "."
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".partial",
                                       dir=folder)
    name = os.path.basename(dest)
    try:
        digest = hashlib.sha256()
        received = 0
        try:
            response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as error:
            raise PresetError(f"{url}: HTTP {error.code} {error.reason}; check the release URL "
                              f"(${URL_ENV}) or that {name} was published") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PresetError(f"{url}: cannot download ({reason}); check the network or use "
                              f"offline mode with a filled cache") from None
        with response, os.fdopen(handle, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _progress_bar(total, name, progress)
            try:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, ValueError) as error:
                        raise PresetError(f"{url}: connection lost after {received} bytes "
                                          f"({error}); nothing was cached, retry") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
            out.flush()
            os.fsync(out.fileno())
        if total is not None and received != total:
            raise PresetError(f"{url}: truncated download ({received} of {total} bytes); "
                              f"nothing was cached, retry")
        found = digest.hexdigest()
        if expected_sha256 is not None and found != expected_sha256:
            raise PresetError(f"{url}: sha256 {found} does not match {expected_sha256} listed "
                              f"in {SUMS}; the file is corrupt or was tampered with, nothing "
                              f"was cached")
        os.replace(partial, dest)
        return dest
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _progress_bar(total, name, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, file=sys.stderr, leave=False)


def _fetch_sums(base: str, offline: bool, progress: bool) -> Dict[str, str]:
    """The release's checksums: read in place for a local folder, else cached from the URL."""
    if not _is_url(base):
        path = os.path.join(base, SUMS)
        if not os.path.exists(path):
            raise PresetError(f"{path}: missing; a release folder lists its assets' sha256 there "
                              f"(scripts/release.py build writes it)")
        with open(path) as handle:
            return parse_sums(handle.read(), path)
    cached = os.path.join(_base_cache(base), SUMS)
    if offline:
        if not os.path.exists(cached):
            raise PresetError(f"{cached}: not cached, and offline mode never downloads; run "
                              f"once online or unset {OFFLINE_ENV}")
    else:
        # always refreshed online: a re-published release must not verify against stale sums
        download(_join(base, SUMS), cached, None, progress=False)
    with open(cached) as handle:
        return parse_sums(handle.read(), cached)


def fetch_asset(base: str, name: str, offline: Optional[bool] = None,
                progress: bool = True) -> str:
    """A verified local copy of release asset ``name`` under ``base``; downloads if needed."""
    offline = offline_default() if offline is None else offline
    sums = _fetch_sums(base, offline, progress)
    where = _join(base, SUMS)
    if name not in sums:
        raise PresetError(f"{where}: lists no {name}; the release does not publish it")
    expected = sums[name]
    if not _is_url(base):
        path = os.path.join(base, name)
        if not os.path.exists(path):
            raise PresetError(f"{path}: missing, though {SUMS} lists it")
        return _verified(path, expected)
    dest = os.path.join(_base_cache(base), name)
    if os.path.exists(dest):
        if sha256_file(dest) == expected:
            return dest
        os.remove(dest)  # a changed cached copy is never used
        if offline:
            raise PresetError(f"{dest}: cached copy does not match sha256 {expected}; removed. "
                              f"Offline mode cannot download it again")
    elif offline:
        raise PresetError(f"{dest}: not cached, and offline mode never downloads; run once "
                          f"online or unset {OFFLINE_ENV}")
    return download(_join(base, name), dest, expected, progress=progress)


def _verified(path: str, expected: str) -> str:
    found = sha256_file(path)
    if found != expected:
        raise PresetError(f"{path}: sha256 {found} does not match {expected} in {SUMS}; the "
                          f"file is corrupt or was changed")
    return path


# --- resolving a preset argument ------------------------------------------------------------

def _preset_for(name: str) -> Optional[Preset]:
    try:
        return get_preset(name)
    except KeyError:
        return None


def _report_config(weights_path: str) -> Tuple[Optional[dict], Optional[str]]:
    """(model config, entry name) from the ``NAME.json`` report beside a weights file."""
    report = weights_path[: -len(".weights.h5")] + ".json"
    if not os.path.exists(report):
        return None, None
    try:
        with open(report) as handle:
            entry = json.load(handle)["entry"]
        return dict(entry["model_config"]), entry.get("name")
    except (OSError, ValueError, KeyError, TypeError):
        raise PresetError(f"{report}: not a readable conversion report (expected JSON with "
                          f"entry.model_config)") from None


def _single_entry(names, where: str) -> str:
    weights = sorted(n[: -len(".weights.h5")] for n in names if n.endswith(".weights.h5"))
    if len(weights) != 1:
        listed = ", ".join(weights) if weights else "none"
        raise PresetError(f"{where}: holds {len(weights)} entries ({listed}); pass a zoo name "
                          f"with {URL_ENV} set to this release instead")
    return weights[0]


def resolve_preset(preset: str, offline: Optional[bool] = None,
                   progress: bool = True) -> Resolved:
    """A local, verified file for ``preset``: a zoo name, a release folder (one entry), a
    ``.keras`` / ``.weights.h5`` path, or a URL of a release asset."""
    preset = os.fspath(preset)
    if os.path.isdir(preset):
        if os.path.exists(os.path.join(preset, "saved_model.pb")):
            raise PresetError(f"{preset}: is a SavedModel, which holds a traced graph, not a "
                              f"Keras model; load it with tf.saved_model.load, or pass the "
                              f".keras / .weights.h5 file of the same entry")
        sums = _fetch_sums(preset, True, progress)
        return _from_release(preset, _single_entry(sums, preset), offline, progress)
    if os.path.isfile(preset):
        return _from_file(preset)
    if _is_url(preset):
        if preset.endswith("/"):
            sums = _fetch_sums(preset, bool(offline), progress)
            return _from_release(preset, _single_entry(sums, preset), offline, progress)
        base, _, name = preset.rpartition("/")
        local = fetch_asset(base, urllib.parse.unquote(name), offline, progress)
        return _from_file(local, entry_name=_entry_of_asset(urllib.parse.unquote(name)))
    found = _preset_for(preset)
    if found is None:
        if preset.endswith((".keras", ".h5")) or os.sep in preset:
            raise PresetError(f"{preset}: no such file")
        raise PresetError(f"{preset}: not a zoo preset, file, folder or URL; zoo presets are "
                          f"named like TFVideoMAE_B_K400_16x224_FT")
    return _from_release(zoo_url(), found.name, offline, progress)


def _entry_of_asset(name: str) -> str:
    for suffix in (".weights.h5", ".keras"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise PresetError(f"{name}: expected a .keras or .weights.h5 asset")


def _from_release(base: str, name: str, offline, progress) -> Resolved:
    path = fetch_asset(base, f"{name}.weights.h5", offline, progress)
    preset = _preset_for(name)
    config = preset.model_config() if preset is not None else None
    if config is None:
        report = fetch_asset(base, f"{name}.json", offline, progress)
        with open(report) as handle:
            config = json.load(handle)["entry"]["model_config"]
    return Resolved(path, "weights", preset, config)


def _from_file(path: str, entry_name: Optional[str] = None) -> Resolved:
    if path.endswith(".keras"):
        name = entry_name or os.path.basename(path)[: -len(".keras")]
        return Resolved(path, "keras", _preset_for(name))
    if path.endswith(".weights.h5"):
        config, name = _report_config(path)
        name = name or entry_name or os.path.basename(path)[: -len(".weights.h5")]
        preset = _preset_for(name)
        if config is None and preset is not None:
            config = preset.model_config()
        if config is None:
            raise PresetError(f"{path}: no NAME.json report beside it and {name!r} is not a zoo "
                              f"name, so its dimensions are unknown; keep the report next to "
                              f"the weights or build the model yourself and call load_weights")
        return Resolved(path, "weights", preset, config)
    raise PresetError(f"{path}: expected a .keras or .weights.h5 file, a release folder or a "
                      f"zoo name")


# --- building the requested model -----------------------------------------------------------

def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else repr(error)


def _load_source(resolved: Resolved):
    """The model stored in ``resolved``: a VideoMAEClassifier or VideoMAEPretrainer."""
    from .legacy import load_model_file, load_weights_file
    from .pretrain import VideoMAEPretrainer
    from .videomae import VideoMAEClassifier

    if resolved.kind == "keras":
        try:
            return load_model_file(resolved.path)
        except Exception as error:  # keras raises many types for a bad file
            raise PresetError(f"{resolved.path}: cannot be loaded as a Keras model "
                              f"({_first_line(error)})") from None
    config = dict(resolved.config)
    cls = VideoMAEClassifier if "num_classes" in config else VideoMAEPretrainer
    model = cls(**config)
    try:
        load_weights_file(model, resolved.path)
    except Exception as error:
        raise PresetError(f"{resolved.path}: does not fit a {cls.__name__} of {config} "
                          f"({_first_line(error)})") from None
    return model


def copy_matching(source: Dict[str, object], target: Dict[str, object], what: str) -> None:
    """Assign every ``target`` variable from the ``source`` variable of the same name; every
    one must exist there with the same shape (a backbone is never half-loaded)."""
    missing = [name for name, variable in target.items()
               if name not in source or tuple(source[name].shape) != tuple(variable.shape)]
    if missing:
        raise PresetError(f"{what}: the stored model has no matching {', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''}; it is not a VideoMAE model "
                          f"of these dimensions")
    for name, variable in target.items():
        variable.assign(source[name].value)


def load_preset_model(cls, preset: str, offline: Optional[bool] = None, progress: bool = True,
                      **overrides):
    """``cls.from_preset``: the model of ``preset`` as ``cls``, with ``overrides`` applied.

    VideoMAEClassifier from a PT preset needs ``num_classes``: its backbone carries the
    pre-trained encoder (without ``encoder.norm``, as upstream's fine-tuning drops it with
    mean pooling) and its ``fc_norm`` and head are new. VideoMAEBackbone returns the encoder
    of any preset. ``overrides`` are constructor arguments (``num_classes``, ``dropout``,
    ``drop_path_rate``...). For mixed precision set Keras's global policy first
    (``keras.mixed_precision.set_global_policy("mixed_bfloat16")``).
    """
    from .pretrain import VideoMAEPretrainer
    from .videomae import BACKBONE_ARGS, VideoMAEBackbone, VideoMAEClassifier

    resolved = resolve_preset(preset, offline=offline, progress=progress)
    source = _load_source(resolved)
    is_pt = isinstance(source, VideoMAEPretrainer)
    backbone_config = {k: getattr(source.backbone, k) for k in BACKBONE_ARGS}
    backbone_overrides = {k: overrides.pop(k) for k in BACKBONE_ARGS if k in overrides}
    backbone_config.update(backbone_overrides)

    if cls is VideoMAEBackbone:
        model = VideoMAEBackbone(**backbone_config, final_norm=source.backbone.final_norm,
                                 **overrides)
        copy_matching(source.backbone.named_variables(), model.named_variables(), preset)
    elif cls is VideoMAEPretrainer:
        if not is_pt:
            raise PresetError(f"{preset}: is a fine-tuned (FT) classifier; a "
                              f"VideoMAEPretrainer needs a pre-trained (PT) preset")
        if not (overrides or backbone_overrides):
            model = source
        else:
            config = {k: getattr(source, k) for k in VideoMAEPretrainer.TASK_CONFIG}
            config.update(overrides)
            model = VideoMAEPretrainer(**backbone_config, **config)
            copy_matching(source.named_variables(), model.named_variables(), preset)
    elif cls is VideoMAEClassifier:
        if is_pt and "num_classes" not in overrides:
            raise PresetError(f"{preset}: is a pre-trained (PT) model with no classifier head; "
                              f"pass num_classes=N to fine-tune it")
        if not is_pt and not (overrides or backbone_overrides):
            model = source
        else:
            num_classes = overrides.pop("num_classes", None) or source.num_classes
            dropout = overrides.pop("dropout", 0.0 if is_pt else source.dropout)
            model = VideoMAEClassifier(**backbone_config, num_classes=num_classes,
                                       dropout=dropout, **overrides)
            copy_matching(source.backbone.named_variables(),
                          model.backbone.named_variables(), preset)
            if not is_pt and num_classes == source.num_classes:
                copy_matching({k: v for k, v in source.named_variables().items()
                               if k.startswith(("fc_norm.", "head."))},
                              {k: v for k, v in model.named_variables().items()
                               if k.startswith(("fc_norm.", "head."))}, preset)
    else:
        raise PresetError(f"{cls.__name__}: from_preset builds VideoMAEBackbone, "
                          f"VideoMAEClassifier or VideoMAEPretrainer")
    model.preset = resolved.preset
    return model
