"""Release assets from a conversion folder: zipped SavedModels, weights, a keras-hub preset
per entry (a tar of the folder ``save_to_preset`` writes, with the model card as its
README.md), checksums, manifest, MODEL_ZOO.md and a model card per entry; and publishing the
presets to Hugging Face or Kaggle through ``keras_hub.upload_preset``.

A release asset list is flat, so each preset folder ships as one tar, packed
deterministically (its ``metadata.json`` holds keras-hub's ``date_saved``, so each build's
tar differs), ``NAME.kerashub.tar`` (top folder ``NAME/``), listed in SHA256SUMS and the
manifest like every other asset; unpacked, it is a folder
``keras_hub.models.Backbone.from_preset`` opens.

Nothing is listed that was not first verified against its conversion report (sha256 of every
artifact) and then reloaded in a fresh process and re-checked against the float64 reference
fingerprint recorded at conversion time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import Dict, List, Optional

import numpy as np

from tf_models.artifacts.checksums import (SUMS, bad_line_message, is_plain_name,
                                           parse_sums_lines, sha256_file, write_folder_sums)
from tf_models.artifacts.files import fsync_dir, fsync_tree, stop_signals_deferred
from tf_models.artifacts.names import (LITERT_KINDS, QUANTIZED_MODES, SUFFIXES, artifact_paths,
                                       entry_name, kind_of_path, quantized_kind)
from tf_models.artifacts.parts import (PARTS_KEY, JoinDamaged, JoinedReader, join_parts,
                                       joined_sha256, parse_size, part_names, split_file)
from tf_models.lifetime import framework_child
from tf_models.presets import RECIPES
from tf_models.stopping import Terminated, stop_handlers

from . import __version__
from .errors import ConversionError, require_tensorflow_backend, type_in_words
from .kinds import kind_of, litert_output_name
from .record import ConversionRecord, RecordError, RunOutcome
from .release_scratch import (OLD, PARTIAL, PUBLISH_PARTIAL, PUBLISH_SCRATCH, RELEASE_CHECK,
                              RELEASE_JOIN, TEMP_PREFIXES, make_scratch_folder,
                              make_temp_scratch, remove_scratch_folder, remove_stale_scratch)
from .zoo import ALL_SIZES, DATASETS, FAMILIES, Entry, conversion_entry

ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same SavedModel zips to the same bytes
# every entry NAME of a release has exactly these assets: kind -> file name suffix
ENTRY_ASSETS = {"savedmodel": ".savedmodel.zip", "weights": SUFFIXES["weights"],
                "keras": SUFFIXES["keras"], "report": SUFFIXES["report"], "card": ".md",
                "kerashub": ".kerashub.tar"}
# and these when its conversion wrote them (``--litert``, ``--litert-quantize``)
OPTIONAL_ASSETS = {kind: SUFFIXES[kind] for kind in LITERT_KINDS}
# the assets that hold the model, each reloaded and re-checked in a fresh process
MODEL_ASSETS = ("savedmodel", "weights", "keras") + LITERT_KINDS + ("kerashub",)
# the model card inside a preset folder (keras-hub's README_FILE; Hugging Face shows it)
PRESET_CARD = "README.md"


def git_commit(here: Optional[str] = None) -> Optional[str]:
    """The commit of the converter's code: HEAD of the checkout it runs from (its files
    tracked there), else, installed from a built copy, the commit that copy was built from
    (``BUILD_COMMIT``, written by setup.py); None when neither is known. ``here``: the
    package's folder (default: this one)."""
    here = here or os.path.dirname(os.path.abspath(__file__))

    def git(*args) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # a package installed into a folder inside some other repository (a virtual environment
    # in a project's checkout) is not tracked there: that repository's HEAD is not ours
    if git("ls-files", "--error-unmatch", "release.py"):
        return git("rev-parse", "HEAD") or None
    try:
        with open(os.path.join(here, "BUILD_COMMIT")) as handle:
            commit = handle.read().strip()
    except OSError:
        return None
    return commit if len(commit) == 40 and set(commit) <= set("0123456789abcdef") else None


def zip_savedmodel(folder: str, zip_path: str) -> None:
    """Zip a SavedModel folder deterministically, with the folder name as the top entry."""
    top = os.path.basename(folder.rstrip(os.sep))
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                info = zipfile.ZipInfo(os.path.join(top, os.path.relpath(full, folder)), ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(full, "rb") as handle:
                    archive.writestr(info, handle.read())


def tar_preset(folder: str, tar_path: str) -> None:
    """Tar a preset folder deterministically (sorted, fixed times and owners), the folder name
    as the top entry."""
    top = os.path.basename(folder.rstrip(os.sep))

    def fixed(info):
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(folder, top, recursive=False, filter=fixed)
        for name in sorted(os.listdir(folder)):
            archive.add(os.path.join(folder, name), f"{top}/{name}", filter=fixed)


def untar_preset(tar_path: str, into: str) -> str:
    """The preset folder of ``tar_path`` unpacked under ``into``; returns its path. Only a
    plain tar, as ``tar_preset`` writes (a compressed one could unpack to any size), and
    tarfile's "data" filter (no links out of the folder, absolute paths, ``..`` or devices);
    anything else is one ConversionError line."""
    try:
        with tarfile.open(tar_path, "r:") as archive:
            tops = {name.split("/")[0] for name in archive.getnames()}
            if len(tops) != 1:
                raise ConversionError(f"{tar_path}: expected one top folder, found "
                                      f"{len(tops)}")
            archive.extractall(into, filter="data")
    except tarfile.TarError as error:  # not a plain tar (ReadError), or a member the filter
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ConversionError(f"{tar_path}: expected a plain tar of one preset folder, as the "
                              f"release build writes, found {type(error).__name__}: {reason}; "
                              f"rebuild the release") from None
    return os.path.join(into, tops.pop())


def write_preset(keras_path: str, entry: Entry, preset_dir: str) -> str:
    """The keras-hub preset folder of a converted entry, from its ``.keras`` file, written by
    keras-hub's ``save_to_preset`` (``tf_models.kerashub_presets.save_zoo_preset``: a
    classifier gets its preprocessor, raw uint8 frames in). The zoo row is the entry's own
    preset, so an encoder-only conversion (``NAME_encoder``, not a zoo name) gets the preset of
    its backbone alone. Returns the model's class name."""
    from tf_models.artifacts.resolve import Resolved, load_keras_model
    from tf_models.kerashub_presets import save_zoo_preset

    model = load_keras_model(Resolved(keras_path, "keras", None))
    save_zoo_preset(model, entry.preset, preset_dir)
    return type(model).__name__


def preset_card(card: str, entry: Entry) -> str:
    """A preset's README.md: the model card under Hugging Face's metadata block (library, the
    weights' licence, task)."""
    licence = FAMILIES[entry.family]["weights_licence"].lower().replace(" ", "-")
    lines = ["---", "library_name: keras-hub", f"license: {licence}"]
    if kind_of(entry).name == "classifier":
        lines.append("pipeline_tag: video-classification")
    lines += ["tags:", "- videomae", "- video", "---", ""]
    return "\n".join(lines) + card


def _float64_where(inputs) -> str:
    """Which clips the float64 reference ran on, when not all of them."""
    if inputs.float64_samples is None or inputs.float64_samples >= inputs.batch:
        return ""
    return f" (float64 on the first {inputs.float64_samples} of {inputs.batch} clips per case)"


# --- fresh-process check ---------------------------------------------------------------------

def check_assets(report_path: str, assets: Dict[str, str]) -> Dict[str, float]:
    """Reload each asset and return its max error against the report's reference fingerprint.

    Runs inside the fresh process (``FreshProcessChecker``).
    """
    from .export import RELOADERS
    from .parity import fingerprint_error, make_cases

    report = ConversionRecord.load(report_path)
    entry = report.zoo_entry()
    cases = make_cases(entry, batch=report.parity_inputs.batch, seed=report.parity_inputs.seed)
    errors: Dict[str, float] = {}
    scratch = make_temp_scratch(RELEASE_CHECK)
    try:
        for kind, path in assets.items():
            if kind == "savedmodel" and path.endswith(".zip"):
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(scratch)
                    path = os.path.join(scratch, archive.namelist()[0].split("/")[0])
            if kind == "kerashub" and path.endswith(".tar"):
                path = untar_preset(path, os.path.join(scratch, "kerashub"))
            run = RELOADERS[kind](entry, path)
            worst = 0.0
            for case in cases:
                outputs = run(case)
                fingerprints = report.reference_fingerprint[case.name]
                if len(outputs) == len(fingerprints) == 1:
                    # reports written before the PT output was named "pixels" call it "logits"
                    fingerprints = {next(iter(outputs)): next(iter(fingerprints.values()))}
                for name, fingerprint in fingerprints.items():
                    worst = max(worst, fingerprint_error(np.asarray(outputs[name]), fingerprint))
            errors[kind] = worst
    finally:
        remove_scratch_folder(scratch)
    return errors


class FreshProcessChecker:
    """``check_assets`` in one new Python process for the whole release: the process starts
    (and pays its imports, 10-15 s on 2 cores) once, then checks one entry at a time, each entry's
    artifacts reloaded into new objects and freed before the next (so the disk and memory
    needed stay those of one entry). Use as a context manager; ``check`` raises
    ConversionError when the process fails."""

    def __init__(self):
        self.process: Optional[subprocess.Popen] = None
        self.log = None

    def __enter__(self) -> "FreshProcessChecker":
        self.log = tempfile.TemporaryFile(mode="w+")  # its stderr: never a full pipe
        self.process = subprocess.Popen(framework_child("converter.release:serve_checks"),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True)
        return self

    def check(self, report_path: str, assets: Dict[str, str]) -> Dict[str, float]:
        """{asset kind: max error against the report's reference fingerprint}."""
        try:
            self.process.stdin.write(json.dumps([report_path, assets]) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except OSError:  # the process is gone: its stderr says why
            line = ""
        if not line:
            self.process.wait()
            self.log.seek(0)
            tail = (self.log.read().strip().splitlines() or ["no output"])[-1]
            raise ConversionError(f"{report_path}: fresh-process reload check failed ({tail})")
        return json.loads(line)

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is not None:  # a failure or a stop: the check under way is not wanted
                self.process.terminate()  # (it removes its scratch folder: serve_checks)
            self.process.stdin.close()
            self.process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.log.close()


def serve_checks() -> None:
    """The fresh process: one ``[REPORT, ASSETS]`` JSON line in, one errors JSON line out,
    until stdin closes. Anything a library prints goes to stderr, not into the answers.
    SIGTERM (the release stopping, or its process gone) ends it after its scratch folder is
    removed."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        with stop_handlers():
            for line in sys.stdin:
                report_path, assets = json.loads(line)
                answers.write(json.dumps(check_assets(report_path, assets)) + "\n")
                answers.flush()
    except (Terminated, KeyboardInterrupt):
        sys.exit(1)


# --- building the release --------------------------------------------------------------------

def _reports(conversion_dir: str) -> List[str]:
    """The conversion reports in a folder: JSON objects with an entry and a parity record
    (other JSON files, such as a manifest, are not reports)."""
    found = []
    for name in sorted(os.listdir(conversion_dir)):
        path = os.path.join(conversion_dir, name)
        if name.endswith(".json") and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError) as error:  # a report cut short is no reason to skip
                _refuse_unreadable_report(conversion_dir, name, error)
                continue
            if isinstance(data, dict) and "entry" in data and "parity" in data:
                found.append(path)
    return found


def _refuse_unreadable_report(conversion_dir: str, name: str, error: Exception) -> None:
    """ConversionError when ``NAME.json``, which cannot be read as JSON, has artifacts of
    ``NAME`` beside it: it is their report, damaged, and the build would otherwise release
    the folder without that entry. Any other such JSON file is not a report."""
    stem = name[: -len(SUFFIXES["report"])]
    beside = sorted(os.path.basename(path)
                    for kind, path in artifact_paths(conversion_dir, stem, litert=True).items()
                    if kind != "report" and os.path.exists(path))
    if beside:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0][:200]
        raise ConversionError(f"{os.path.join(conversion_dir, name)}: expected the conversion "
                              f"report of {', '.join(beside)} beside it, found a file that "
                              f"cannot be read as JSON ({reason}); convert {stem} again with "
                              f"--force, or move its files out of the folder")


def _is_zoo_name(name: str) -> bool:
    """Whether ``name`` names a zoo entry's conversion (its encoder-only one included)."""
    try:
        conversion_entry(name)
    except KeyError:
        return False
    return True


def _refuse_artifacts_without_report(conversion_dir: str) -> None:
    """ConversionError when a zoo entry's artifacts lie in the folder without their
    ``NAME.json`` (the report is placed last: a conversion killed while moving its artifacts
    into place, or a report deleted or moved away): the build would otherwise release the
    folder without that entry, and say nothing."""
    orphans: Dict[str, List[str]] = {}
    for name in sorted(os.listdir(conversion_dir)):
        path = os.path.join(conversion_dir, name)
        if name.startswith(".") or kind_of_path(path) in (None, "report", "preset"):
            continue
        stem = entry_name(path)
        if _is_zoo_name(stem) and not os.path.lexists(
                os.path.join(conversion_dir, stem + SUFFIXES["report"])):
            orphans.setdefault(stem, []).append(name)
    if orphans:
        stem, files = sorted(orphans.items())[0]
        more = f" (and {len(orphans) - 1} more entries)" if len(orphans) > 1 else ""
        raise ConversionError(f"{os.path.join(conversion_dir, stem + SUFFIXES['report'])}: "
                              f"expected the conversion report of {', '.join(files)} beside "
                              f"them, found none{more}; convert {stem} again with --force, "
                              f"or move its files out of the folder to release without it")


def _refuse_duplicate_reports(loaded) -> None:
    """ConversionError when two report files of the folder report the same entry (a copy
    beside the original, ``NAME (copy).json``): the entry would be packed twice."""
    first: Dict[str, str] = {}
    for path, report in loaded:
        if report is None:
            continue
        if report.name not in first:
            first[report.name] = path
            continue
        both, keep = (first[report.name], path), f"{report.name}.json"
        extra = [p for p in both if os.path.basename(p) != keep]
        fix = (f"move {extra[0]} out of the folder" if len(extra) == 1 else
               f"keep one of them, as {keep}, and move the other out of the folder")
        raise ConversionError(f"{both[0]} and {both[1]}: expected one conversion report per "
                              f"entry, found both reporting {report.name}; {fix}")


def _zoo_entry(report: ConversionRecord, report_path: str) -> Entry:
    """The zoo entry of a report, or ConversionError naming the file when this converter's zoo
    does not know it (a report of a newer version, or a hand-edited one)."""
    try:
        return report.zoo_entry()
    except KeyError:
        raise ConversionError(f"{report_path}: expected a report of a zoo entry, found entry "
                              f"{report.name!r}, which this converter's zoo does not know; "
                              f"convert it with this version or move the file out of the "
                              f"folder") from None


def _load_report(report_path: str, conversion_dir: str, log) -> Optional[ConversionRecord]:
    """The report in ``report_path``, or None (with one logged line) for a ``videomae-export``
    report: an exported user model is not a zoo conversion and is left out of a release."""
    report = ConversionRecord.load(report_path)
    if report.reference != "torch":
        log(f"{os.path.basename(report_path)}: a videomae-export report (reference "
            f"{report.reference!r}), not a zoo conversion; left out of the release")
        return None
    _zoo_entry(report, report_path)
    return report


def _verified(report_path: str, report: ConversionRecord,
              conversion_dir: str) -> ConversionRecord:
    """The report of a conversion whose artifacts match it (ConversionError naming the entry
    and the file otherwise)."""
    from .export import verify_artifacts

    entry = report.zoo_entry()
    reason = verify_artifacts(conversion_dir, entry, {"sha256": report.source.sha256})
    if reason is not None:
        raise ConversionError(f"{entry.name}: expected artifacts that match its report "
                              f"{report_path}, found that {reason}; convert {entry.name} again "
                              f"with --force, or move its files out of the folder to release "
                              f"without it")
    return report


def _failed_outcomes(conversion_dir: str) -> List[str]:
    """One line per entry whose last ``--all`` conversion into this folder failed
    (``logs/NAME.outcome.json``, status "failed") and that has no report here (one converted
    since, by another run, is released like the rest)."""
    logs = os.path.join(conversion_dir, "logs")
    if not os.path.isdir(logs):
        return []
    failed = []
    for name in sorted(os.listdir(logs)):
        if name.endswith(".outcome.json"):
            path = os.path.join(logs, name)
            outcome = RunOutcome.load(path)
            if outcome is not None and outcome.status == "failed" and not os.path.isfile(
                    os.path.join(conversion_dir, f"{outcome.name}.json")):
                why = (outcome.message.strip().splitlines() or ["no message"])[0][:200]
                failed.append(f"{path}: expected every entry converted, found {outcome.name} "
                              f"failed ({why}); convert it again, or delete this file to "
                              f"release without it")
    return failed


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def _check_destination(conversion_dir: str, release_dir: str, force: bool) -> None:
    """Refuse, before any work, a release folder that would overwrite what it must not."""
    if _inside(release_dir, conversion_dir) or _inside(conversion_dir, release_dir):
        raise ConversionError(f"{release_dir}: expected a release folder outside the "
                              f"conversion folder {conversion_dir}, found it the same, inside "
                              f"or around it (--force would delete the conversions); choose "
                              f"another release folder")
    if os.path.islink(release_dir):  # --force would end in rmtree refusing a link
        raise ConversionError(f"{release_dir}: expected a release folder, found a symbolic link "
                              f"to {os.readlink(release_dir)}; pass the folder itself or "
                              f"another path")
    if os.path.lexists(release_dir) and not os.path.isdir(release_dir):
        raise ConversionError(f"{release_dir}: expected a release folder, found a file; choose "
                              f"another path or remove the file")
    if os.path.exists(release_dir):
        if not force:
            raise ConversionError(f"{release_dir}: already exists; pass --force to replace it")
        if os.listdir(release_dir) and not os.path.isfile(os.path.join(release_dir,
                                                                       "manifest.json")):
            raise ConversionError(f"{release_dir}: --force replaces a release folder (one "
                                  f"with manifest.json) or an empty one, found a folder "
                                  f"without manifest.json; choose another release folder")


def manifest_entry(report: ConversionRecord) -> dict:
    """What the manifest records of an entry from its report (``release_check`` aside): verify
    compares a release's manifest with its ``NAME.json`` reports through this."""
    parity = report.parity
    return {"entry": report.entry, "source_sha256": report.source.sha256,
            "synthetic_seed": report.source.synthetic_seed, "versions": report.versions,
            "parity": {"tf_err_vs_f64": parity.tf_err_vs_f64,
                       "torch_err_vs_f64": parity.torch_err_vs_f64,
                       "max_abs": parity.max_abs, "tolerance": parity.tolerance}}


def asset_tolerance(report: ConversionRecord, kind: str) -> float:
    """What a reloaded asset of ``kind`` is held to: the parity tolerance, or for a
    ``--litert-quantize`` file the bound its conversion held it to (its reload check's)."""
    check = report.reload_checks.get(kind)
    if check is not None and check.method == "quantized":
        return check.tolerance
    return report.parity.tolerance


def _release_entry(report_path: str, report: ConversionRecord, conversion_dir: str,
                   staging: str, base_url: str, manifest: dict, checker: FreshProcessChecker,
                   log) -> None:
    """One verified conversion's assets packed into ``staging``, re-checked by ``checker``,
    and added to ``manifest`` with its model card and keras-hub preset."""
    entry = report.zoo_entry()
    paths = artifact_paths(conversion_dir, entry.name, litert=True)
    assets = {"savedmodel": os.path.join(staging, f"{entry.name}.savedmodel.zip"),
              "weights": os.path.join(staging, f"{entry.name}.weights.h5"),
              "keras": os.path.join(staging, f"{entry.name}.keras")}
    for kind in LITERT_KINDS:
        if kind in report.artifacts:  # verified with the others (_verified)
            assets[kind] = os.path.join(staging, f"{entry.name}{SUFFIXES[kind]}")
    log(f"{entry.name}: packing and re-checking in a fresh process")
    zip_savedmodel(paths["savedmodel"], assets["savedmodel"])
    for kind in ("weights", "keras") + LITERT_KINDS:
        if kind in assets:
            shutil.copyfile(paths[kind], assets[kind])
    report_asset = os.path.join(staging, f"{entry.name}.json")
    shutil.copyfile(report_path, report_asset)
    preset_dir = os.path.join(staging, ".presets", entry.name)
    preset_class = write_preset(paths["keras"], entry, preset_dir)
    assets["kerashub"] = preset_dir  # checked as a folder, shipped as a tar
    errors = checker.check(report_asset, assets)
    bad = {k: v for k, v in errors.items() if not v <= asset_tolerance(report, k)}
    if bad:
        raise ConversionError(f"{entry.name}: reloaded assets differ from the reference: "
                              + ", ".join(f"{k} {v:.2e} > {asset_tolerance(report, k):.0e}"
                                          for k, v in bad.items()))
    manifest["entries"][entry.name] = dict(manifest_entry(report), release_check=errors)
    card = os.path.join(staging, f"{entry.name}.md")
    text = render_model_card(entry, report, base_url, errors, preset_class,
                             manifest.get(PART_SIZE_KEY))
    with open(card, "w") as handle:
        handle.write(text)
    with open(os.path.join(preset_dir, PRESET_CARD), "w") as handle:
        handle.write(preset_card(text, entry))
    assets["kerashub"] = os.path.join(staging, f"{entry.name}{ENTRY_ASSETS['kerashub']}")
    tar_preset(preset_dir, assets["kerashub"])
    shutil.rmtree(os.path.join(staging, ".presets"))
    for kind, path in list(assets.items()) + [("report", report_asset), ("card", card)]:
        name = os.path.basename(path)
        manifest["assets"][name] = {"entry": entry.name, "kind": kind,
                                    "bytes": os.path.getsize(path),
                                    "sha256": sha256_file(path),
                                    "source_sha256": report.source.sha256,
                                    "url": f"{base_url.rstrip('/')}/{name}"}


def build_release(conversion_dir: str, release_dir: str, base_url: str, force: bool = False,
                  log=print, part_size: Optional[int] = None) -> dict:
    """Turn a conversion folder into a release folder; returns the manifest.

    Fails (ConversionError) if any artifact does not match its report, or does not reproduce
    the reference fingerprint when reloaded in a fresh process. The release folder is built
    in a staging folder and moved into place only when everything passed; what a killed build
    left beside it is removed first (``release_scratch.remove_stale_scratch``). Model assets
    over ``part_size`` bytes (default: under the per-file limit of the host ``base_url``
    names, ``HOST_FILE_LIMITS``; none elsewhere) ship in parts (``split_assets``).
    """
    check_base_url(base_url)
    if part_size is None:
        part_size = host_part_size(base_url)
    elif isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < 1:
        raise ConversionError(f"--part-size {part_size!r}: expected a positive number of bytes")
    require_tensorflow_backend("building a release")
    if not os.path.isdir(conversion_dir):
        raise ConversionError(f"{conversion_dir}: not a folder")
    # what a killed build left beside the release goes first: a release it had moved aside
    # is back in place before the destination is checked
    remove_stale_scratch(os.path.dirname(os.path.abspath(release_dir)), log)
    remove_stale_scratch(tempfile.gettempdir(), log, TEMP_PREFIXES)
    _check_destination(conversion_dir, release_dir, force)
    failed = _failed_outcomes(conversion_dir)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise ConversionError(failed[0] + more)
    _refuse_artifacts_without_report(conversion_dir)
    loaded = [(path, _load_report(path, conversion_dir, log))
              for path in _reports(conversion_dir)]
    reports = [path for path, report in loaded if report is not None]
    if not reports:
        raise ConversionError(f"{conversion_dir}: no conversion reports (NAME.json) found")
    _refuse_duplicate_reports(loaded)
    parent = os.path.dirname(os.path.abspath(release_dir))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:  # a file on the way, no permission, a read-only file system
        raise ConversionError(f"{release_dir}: expected a release path in a folder, found its "
                              f"folder cannot be made ({error.strerror}: {error.filename}); "
                              f"choose another release folder") from None
    staging = None
    try:
        with stop_signals_deferred():  # a stop waits until the folder is known to the finally
            staging = make_scratch_folder(PARTIAL, parent)
        # the builder's version and commit; each entry's own converter version is in its
        # "versions" (its report's), which MODEL_ZOO.md names when they differ from this one
        manifest = {"converter_version": __version__, "git_commit": git_commit(),
                    "base_url": base_url, "entries": {}, "assets": {}}
        if part_size is not None:
            manifest[PART_SIZE_KEY] = part_size
        # every entry's artifacts against its report first: a changed file fails the build
        # at once, not after the entries before it were packed and re-checked (minutes each)
        verified = [_verified(path, report, conversion_dir)
                    for path, report in loaded if report is not None]
        with FreshProcessChecker() as checker:  # one process, its imports paid once
            for report_path, report in zip(reports, verified):
                _release_entry(report_path, report, conversion_dir, staging, base_url,
                               manifest, checker, log)
        if part_size is not None:
            split_assets(staging, manifest, part_size, log)
        with open(os.path.join(staging, "MODEL_ZOO.md"), "w") as handle:
            handle.write(render_model_zoo(manifest, base_url))
        with open(os.path.join(staging, "manifest.json"), "w") as handle:
            json.dump(manifest, handle, indent=2)
            handle.write("\n")
        write_sha256sums(staging)
        for line in over_host_limits(staging, base_url):
            log(line)
        _swap_in(staging, release_dir)
        return manifest
    finally:
        if staging is not None:
            remove_scratch_folder(staging)


# hosts whose release assets have a size limit per file: (host, limit in bytes, what it is);
# a file must be under the limit (GitHub: "Each file included in a release must be under
# 2 GiB"), so one of exactly that size is over it too
HOST_FILE_LIMITS = (("github.com", 2 * 2**30, "GitHub's 2 GiB per release asset"),)
# manifest.json: the part size the release was built with (absent: nothing was split)
PART_SIZE_KEY = "part_size"


def _host_limit(base_url: str) -> Optional[tuple]:
    """(host, limit, what) of the host ``base_url`` names, when ``HOST_FILE_LIMITS`` has it."""
    from urllib.parse import urlparse

    host = (urlparse(base_url).hostname or "").lower()
    for domain, limit, what in HOST_FILE_LIMITS:
        if host == domain or host.endswith("." + domain):
            return host, limit, what
    return None


def check_base_url(base_url: str) -> None:
    """ConversionError (one line) unless ``base_url`` is a URL the assets can be fetched from:
    without its scheme (``github.com/ORG/...``) every link of the manifest, MODEL_ZOO.md and
    the cards would be relative, and the host's file limit (``HOST_FILE_LIMITS``) unknown, so
    nothing split under it."""
    from urllib.parse import urlparse

    from tf_models.artifacts.resolve import URL_SCHEMES  # what a release is fetched from

    parsed = urlparse(base_url)
    scheme = parsed.scheme.lower()
    if scheme not in URL_SCHEMES:
        found = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConversionError(f"--base-url {base_url}: expected an https:// (or http://, "
                              f"file://) URL where the assets will be downloadable, found "
                              f"{found}; write it whole, e.g. https://github.com/ORG/REPO/"
                              f"releases/download/v0.1.0")
    if scheme != "file" and not parsed.hostname:
        raise ConversionError(f"--base-url {base_url}: expected a URL with a host, found "
                              f"none; write it whole, e.g. https://github.com/ORG/REPO/"
                              f"releases/download/v0.1.0")


def host_part_size(base_url: str) -> Optional[int]:
    """The default part size for a release under ``base_url``: one byte under its host's
    per-file limit (GitHub takes files "under 2 GiB"), or None (no splitting) for a host
    without one."""
    found = _host_limit(base_url)
    return None if found is None else found[1] - 1


def parse_part_size(text: str) -> int:
    """``--part-size``'s bytes (``1900MiB``, ``2GB``, ``65536``); ConversionError (one line)
    for anything else."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise ConversionError(f"--part-size: {error}") from None


def split_assets(folder: str, manifest: dict, part_size: int, log=print) -> None:
    """Every model asset (``MODEL_ASSETS``) in ``folder`` over ``part_size`` bytes cut into
    numbered parts (``tf_models.artifacts.parts``), the whole file removed; its manifest
    record keeps the whole file's bytes and sha256 and lists the parts (``PARTS_KEY``). The
    documents (reports, cards: kilobytes) are never split."""
    for name, asset in sorted(manifest["assets"].items()):
        if asset["kind"] in MODEL_ASSETS and asset["bytes"] > part_size:
            parts = split_file(os.path.join(folder, name), part_size)
            asset[PARTS_KEY] = [os.path.basename(path) for path in parts]
            log(f"{name}: {asset['bytes'] / 1e9:.2f} GB, shipped as {len(parts)} parts of at "
                f"most {part_size} bytes")


def over_host_limits(release_dir: str, base_url: str) -> List[str]:
    """One line per file of ``release_dir`` over the per-file limit of the host ``base_url``
    names (``HOST_FILE_LIMITS``): the build still writes them, but that host would refuse the
    upload. Assets over the limit are split under it by default (``split_assets``), so this
    names only parts of an explicit ``--part-size`` above the limit."""
    found = _host_limit(base_url)
    if found is None:
        return []
    host, limit, what = found
    lines = []
    for name in sorted(os.listdir(release_dir)):
        size = os.path.getsize(os.path.join(release_dir, name))
        if size >= limit:
            lines.append(f"warning: {name}: {size / 1e9:.2f} GB, over {what} ({host} in "
                         f"--base-url), where its upload would fail; build it with a "
                         f"--part-size under {limit} bytes, or without --part-size")
    return lines


def _move_into_place(staging: str, dest: str) -> None:
    """``staging`` renamed to ``dest`` (nothing there), every file and folder in it flushed to
    disk before the rename and the parent folder after it: a power cut never leaves a folder
    of empty or short files under ``dest``."""
    fsync_tree(staging)
    os.replace(staging, dest)
    fsync_dir(os.path.dirname(os.path.abspath(dest)))


def _swap_in(staging: str, release_dir: str) -> None:
    """``staging`` becomes ``release_dir``; an old release there is moved aside first (under
    its own name, in a scratch folder: a build killed between the renames leaves it for the
    next one to put back) and deleted only once the new one is in place (put back if the move
    fails), so no moment leaves neither. Every staged file and folder is flushed to disk
    before the rename, and the parent folder after it: a power cut never leaves a release
    folder of empty or short files under the final name."""
    if not os.path.exists(release_dir):
        _move_into_place(staging, release_dir)
        return
    fsync_tree(staging)
    parent = os.path.dirname(os.path.abspath(release_dir))
    with stop_signals_deferred():  # a stop waits until one release or the other is in place
        aside = make_scratch_folder(OLD, os.path.dirname(staging))
        try:
            old = os.path.join(aside, os.path.basename(os.path.abspath(release_dir)))
            os.replace(release_dir, old)
            try:
                os.replace(staging, release_dir)
            except BaseException:
                os.replace(old, release_dir)
                raise
            fsync_dir(parent)  # the new release is in place for good before the old goes
        finally:
            remove_scratch_folder(aside)


def write_sha256sums(folder: str) -> None:
    """``folder/SHA256SUMS`` listing every other file (``checksums.write_folder_sums``)."""
    write_folder_sums(folder)


# what each manifest asset and entry must hold (verify reports the first that does not)
ASSET_FIELDS = {"entry": str, "kind": str, "bytes": int, "sha256": str, "source_sha256": str,
                "url": str}
ENTRY_FIELDS = {"entry": dict, "source_sha256": str, "parity": dict, "versions": dict,
                "release_check": dict}
# and what an asset or the manifest holds only sometimes (an asset shipped in parts)
OPTIONAL_ASSET_FIELDS = {PARTS_KEY: list}
OPTIONAL_MANIFEST_FIELDS = {PART_SIZE_KEY: int}
REBUILD = "rebuild the release with scripts/release.py build"


def manifest_shape_problem(manifest) -> Optional[str]:
    """One line saying how ``manifest`` is not shaped like a release manifest, or None."""
    def wrong(where, key, kind, found):
        return (f"manifest.json: expected {where}{key!r} to be {type_in_words(kind())}, found "
                f"{type_in_words(found)}; {REBUILD}")
    if not isinstance(manifest, dict):
        return (f"manifest.json: expected a JSON object, found {type_in_words(manifest)}; "
                f"{REBUILD}")
    for key, kind in (("entries", dict), ("assets", dict), ("base_url", str)):
        if not isinstance(manifest.get(key), kind):
            return wrong("", key, kind, manifest.get(key))
    for key, kind in OPTIONAL_MANIFEST_FIELDS.items():
        value = manifest.get(key, kind())
        if not isinstance(value, kind) or isinstance(value, bool):
            return wrong("", key, kind, value)
    for group, fields in (("assets", ASSET_FIELDS), ("entries", ENTRY_FIELDS)):
        for name, record in manifest[group].items():
            if not isinstance(record, dict):
                return wrong(f"{group} ", name, dict, record)
            optional = OPTIONAL_ASSET_FIELDS if group == "assets" else {}
            for key, kind in list(fields.items()) + [(k, v) for k, v in optional.items()
                                                     if k in record]:
                value = record.get(key)
                if not isinstance(value, kind) or isinstance(value, bool):
                    return wrong(f"{group}[{name!r}] ", key, kind, value)
            parts = record.get(PARTS_KEY) if group == "assets" else None
            if parts is not None and (not parts or parts != part_names(name, len(parts))):
                return (f"manifest.json: expected assets[{name!r}][{PARTS_KEY!r}] to name "
                        f"its parts {name}.part-001-of-N in order, found {parts[:3]}; "
                        f"{REBUILD}")
        if group == "entries":  # each reloaded asset's error against the reference: numbers
            for name, record in manifest[group].items():
                for kind, value in record["release_check"].items():
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        return (f"manifest.json: expected entries[{name!r}]['release_check']"
                                f"[{kind!r}] to be a number, found {type_in_words(value)}; "
                                f"{REBUILD}")
    return None


def _preset_members(tar_files: List[str]) -> Dict[str, bytes]:
    """README.md and the class-naming configs (task.json, config.json) of a preset tar (its
    file, or its parts in order: read as one stream)."""
    wanted = (PRESET_CARD, "task.json", "config.json")
    found: Dict[str, bytes] = {}
    with JoinedReader(tar_files) as reader, tarfile.open(fileobj=reader, mode="r|") as archive:
        for member in archive:
            leaf = member.name.split("/", 1)[-1]
            if member.isfile() and leaf in wanted and "/" not in leaf:
                found[leaf] = archive.extractfile(member).read()
    return found


def _preset_class(members: Dict[str, bytes]) -> Optional[str]:
    """The Keras class a preset loads as (its task's, else its backbone's); ValueError when
    that config is not a JSON object."""
    for name in ("task.json", "config.json"):
        if name in members:
            try:
                config = json.loads(members[name])
            except ValueError as error:  # json.JSONDecodeError, a bad encoding
                raise ValueError(f"its {name} is not JSON: {error}") from None
            if not isinstance(config, dict):
                raise ValueError(f"its {name} is {type_in_words(config)}, not a JSON object")
            return config.get("class_name")
    return None


def _intact_files(release_dir: str, name: str, manifest: dict,
                  intact: set) -> Optional[List[str]]:
    """The file of asset ``name``, or its parts in order, when each matches SHA256SUMS
    (``intact``); None otherwise."""
    files = (manifest["assets"].get(name) or {}).get(PARTS_KEY) or [name]
    if all(file in intact for file in files):
        return [os.path.join(release_dir, file) for file in files]
    return None


def _check_parts(release_dir: str, name: str, asset: dict, sums: Dict[str, str],
                 intact: set) -> List[str]:
    """An asset shipped in parts: each part listed in SHA256SUMS (a part that is missing or
    damaged is reported there, once), the whole file not, and the parts joined the bytes and
    sha256 the manifest records."""
    problems = []
    if name in sums:
        problems.append(f"{name}: listed in SHA256SUMS beside its parts; {REBUILD}")
    problems += [f"{part}: a part of {name} in the manifest, not listed in SHA256SUMS; "
                 f"{REBUILD}" for part in asset[PARTS_KEY] if part not in sums]
    files = _intact_files(release_dir, name, {"assets": {name: asset}}, intact)
    if problems or files is None:
        return problems
    digest, size = joined_sha256(files)
    if size != asset["bytes"] or digest != asset["sha256"]:
        problems.append(f"{name}: its parts joined are not the file the manifest records "
                        f"(bytes and sha256); {REBUILD}")
    return problems


def _stray_parts(manifest: dict, names: set) -> Dict[str, str]:
    """{name: its one problem line} for each file named like a part of a manifest asset
    (``NAME.part-...``) that the asset's parts do not list."""
    strays = {}
    for name, asset in manifest["assets"].items():
        listed = set(asset.get(PARTS_KEY) or ())
        for found in sorted(names):
            if found.startswith(f"{name}.part-") and found not in listed:
                strays[found] = (f"{found}: not a part of {name} in the manifest "
                                 f"({len(listed)} parts); remove it or {REBUILD}")
    return strays


def _check_entry_documents(release_dir: str, name: str, info: dict, manifest: dict,
                           intact: set) -> List[str]:
    """An entry's manifest record against its ``NAME.json`` report, and its model card and
    preset card re-rendered from them (a re-signed SHA256SUMS does not hide an edit). Only
    files that match SHA256SUMS (``intact``) are read: the others are reported already."""
    report_path = os.path.join(release_dir, f"{name}.json")
    if f"{name}.json" not in intact:
        return []
    try:
        report = ConversionRecord.load(report_path)
        if report.reference != "torch":
            return [f"{name}.json: expected a zoo conversion report, found a videomae-export "
                    f"one (reference {report.reference!r}); {REBUILD}"]
        entry = _zoo_entry(report, report_path)
    except ConversionError as error:
        return [str(error)]
    problems = []
    if report.name != name:
        problems.append(f"{name}.json: expected the report of {name}, found {report.name}")
    expected = manifest_entry(report)
    for key in sorted(expected):
        if info.get(key) != expected[key]:
            problems.append(f"manifest.json: entries[{name!r}][{key!r}] differs from "
                            f"{name}.json; {REBUILD}")
    if problems:
        return problems
    tar_name = f"{name}{ENTRY_ASSETS['kerashub']}"
    tar_files = _intact_files(release_dir, tar_name, manifest, intact)
    members: Dict[str, bytes] = {}
    if tar_name in manifest["assets"] and tar_files is None:
        return problems  # the card names the preset's class: unknown, and reported already
    if tar_files is not None:
        try:
            members = _preset_members(tar_files)
            preset_class = _preset_class(members)
        except (tarfile.TarError, OSError, ValueError) as error:
            return [f"{name}{ENTRY_ASSETS['kerashub']}: unreadable ({error}); {REBUILD}"]
    else:
        preset_class = None
    card = render_model_card(entry, report, manifest["base_url"], info["release_check"],
                             preset_class, manifest.get(PART_SIZE_KEY))
    card_path = os.path.join(release_dir, f"{name}.md")
    if f"{name}.md" in intact:
        with open(card_path, encoding="utf-8", errors="replace") as handle:
            if handle.read() != card:
                problems.append(f"{name}.md: does not match the card rendered from "
                                f"{name}.json and the manifest; {REBUILD}")
    if PRESET_CARD in members and members[PRESET_CARD].decode("utf-8", "replace") != \
            preset_card(card, entry):
        problems.append(f"{name}{ENTRY_ASSETS['kerashub']}: its {PRESET_CARD} does not match "
                        f"the card rendered from {name}.json and the manifest; {REBUILD}")
    return problems


def _not_a_release_folder(release_dir: str) -> Optional[str]:
    """The one line saying ``release_dir`` is no release folder at all: not a folder, or one
    with neither SHA256SUMS nor manifest.json (the conversion folder, passed by mistake); None
    when it is one (a release missing one of them is a damaged release, reported as such)."""
    if os.path.isdir(release_dir):
        if any(os.path.lexists(os.path.join(release_dir, name))
               for name in ("SHA256SUMS", "manifest.json")):
            return None
        found = ("a folder without SHA256SUMS or manifest.json (a conversion folder is what "
                 "build takes)")
    else:
        found = "a file" if os.path.lexists(release_dir) else "nothing there"
    return (f"{release_dir}: expected a release folder, found {found}; check the path, or "
            f"build the release with scripts/release.py build")


def verify_release(release_dir: str, recheck: bool = False, log=print) -> List[str]:
    """Problems with a release folder (empty when it verifies): SHA256SUMS against the files,
    the manifest against SHA256SUMS, the files and each entry's report, the model cards and
    MODEL_ZOO.md against what the manifest and reports render; with ``recheck`` every entry is
    also reloaded in a fresh process (what a killed recheck left in TMPDIR or beside the
    release removed first, each with a line to ``log``)."""
    problem = _not_a_release_folder(release_dir)
    if problem:
        return [problem]
    problems: List[str] = []
    sums_path = os.path.join(release_dir, "SHA256SUMS")
    if not os.path.exists(sums_path):
        return [f"{sums_path}: missing"]
    try:
        with open(sums_path, encoding="utf-8", errors="replace") as handle:
            sums, bad = parse_sums_lines(handle.read())
    except OSError as error:  # a folder of that name, no permission to read it
        return [f"{sums_path}: expected a readable file, found one that cannot be read "
                f"({error.strerror or error}); {REBUILD}"]
    problems += [bad_line_message(SUMS, number) for number in bad]
    for name in [n for n in sums if not is_plain_name(n)]:
        problems.append(f"SHA256SUMS: expected names of files in the release folder, found "
                        f"{name!r} (a path); {REBUILD}")
        del sums[name]
    on_disk = sorted(n for n in os.listdir(release_dir) if n != "SHA256SUMS")
    for name in sorted(set(on_disk) - set(sums)):
        problems.append(f"{name}: not listed in SHA256SUMS")
    intact = set()  # the files that match SHA256SUMS
    for name, digest in sums.items():
        path = os.path.join(release_dir, name)
        if not os.path.exists(path):
            problems.append(f"{name}: listed in SHA256SUMS but missing")
        elif not os.path.isfile(path):
            problems.append(f"{name}: listed in SHA256SUMS but not a file")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: sha256 differs from SHA256SUMS")
        else:
            intact.add(name)
    try:
        with open(os.path.join(release_dir, "manifest.json")) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        return problems + [f"manifest.json: unreadable ({error})"]
    shape = manifest_shape_problem(manifest)
    if shape is not None:
        return problems + [shape]
    strays = _stray_parts(manifest, set(on_disk) | set(sums))
    problems = [p for p in problems if p not in {f"{n}: not listed in SHA256SUMS"
                                                 for n in strays}] + list(strays.values())
    base = manifest["base_url"].rstrip("/")
    for name, asset in manifest["assets"].items():
        path = os.path.join(release_dir, name)
        if PARTS_KEY in asset:
            problems += _check_parts(release_dir, name, asset, sums, intact)
        elif sums.get(name) != asset["sha256"]:
            problems.append(f"{name}: manifest sha256 differs from SHA256SUMS")
        elif os.path.isfile(path) and os.path.getsize(path) != asset["bytes"]:
            problems.append(f"{name}: size differs from the manifest")
        if asset["url"] != f"{base}/{name}":
            problems.append(f"{name}: expected url {base}/{name} in the manifest, found "
                            f"{asset['url']}; {REBUILD}")
        info = manifest["entries"].get(asset["entry"])
        suffix = {**ENTRY_ASSETS, **OPTIONAL_ASSETS}.get(asset["kind"])
        if info is None:
            problems.append(f"{name}: an asset of {asset['entry']}, which is not in the "
                            f"manifest's entries; {REBUILD}")
        elif asset["source_sha256"] != info["source_sha256"]:
            problems.append(f"{name}: source sha256 differs from its entry's in the manifest")
        if suffix is None or name != f"{asset['entry']}{suffix}":
            problems.append(f"{name}: expected an asset named ENTRY + its kind's suffix, found "
                            f"kind {asset['kind']!r} of {asset['entry']}; {REBUILD}")
    for name, info in manifest["entries"].items():
        kinds = {asset["kind"] for asset in manifest["assets"].values() if asset["entry"] == name}
        for kind in sorted(set(ENTRY_ASSETS) - kinds):
            problems.append(f"{name}{ENTRY_ASSETS[kind]}: the {kind} asset of {name} is not "
                            f"in the manifest")
        for kind in sorted(set(OPTIONAL_ASSETS) - kinds):  # written, so it must ship
            if kind in _reported_artifacts(os.path.join(release_dir, f"{name}.json")):
                problems.append(f"{name}{OPTIONAL_ASSETS[kind]}: the {kind} asset of {name} is "
                                f"in its report but not in the manifest")
        problems += _check_entry_documents(release_dir, name, info, manifest, intact)
    listed = (set(manifest["assets"]) | {"manifest.json", "MODEL_ZOO.md"} | set(strays)
              | {part for asset in manifest["assets"].values()
                 for part in asset.get(PARTS_KEY, ())})
    for name in sorted((set(on_disk) | set(sums)) - listed):
        problems.append(f"{name}: not in the manifest")
    zoo_path = os.path.join(release_dir, "MODEL_ZOO.md")
    if not os.path.isfile(zoo_path):
        if "MODEL_ZOO.md" not in sums:
            problems.append(f"MODEL_ZOO.md: missing; {REBUILD}")
    else:
        try:
            zoo = render_model_zoo(manifest, manifest["base_url"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            zoo = f"cannot be rendered: {type(error).__name__} {error}"
        with open(zoo_path, encoding="utf-8", errors="replace") as handle:
            if handle.read() != zoo:
                problems.append("MODEL_ZOO.md: does not match the manifest")
    if recheck and not problems:  # a killed recheck's scratch folders go first
        remove_stale_scratch(tempfile.gettempdir(), log, TEMP_PREFIXES)
        remove_stale_scratch(os.path.dirname(os.path.abspath(release_dir)), log,
                             (RELEASE_JOIN,))
        with FreshProcessChecker() as checker:
            problems += _recheck(release_dir, manifest, checker)
    return problems


def whole_asset(release_dir: str, name: str, asset: dict, scratch: str) -> str:
    """The path of release asset ``name``: its file, or for one shipped in parts the parts
    joined into ``scratch`` (checked against the manifest's bytes and sha256)."""
    if PARTS_KEY not in asset:
        return os.path.join(release_dir, name)
    try:
        return join_parts([os.path.join(release_dir, part) for part in asset[PARTS_KEY]],
                          os.path.join(scratch, name), asset["sha256"], asset["bytes"])
    except JoinDamaged as error:
        raise ConversionError(f"{error}; {REBUILD}") from None


def _recheck(release_dir: str, manifest: dict, checker: FreshProcessChecker) -> List[str]:
    """Every entry of a verified release reloaded in the fresh process, against its report
    (an asset shipped in parts joined beside the release first, one entry at a time)."""
    problems: List[str] = []
    for name in manifest["entries"]:
        scratch = make_scratch_folder(RELEASE_JOIN,
                                      os.path.dirname(os.path.abspath(release_dir)))
        try:
            assets = {asset["kind"]: whole_asset(release_dir, asset_name, asset, scratch)
                      for asset_name, asset in manifest["assets"].items()
                      if asset["entry"] == name and asset["kind"] in MODEL_ASSETS}
            report = os.path.join(release_dir, f"{name}.json")
            errors = checker.check(report, assets)
        finally:
            remove_scratch_folder(scratch)
        record = ConversionRecord.load(report)
        problems += [f"{name}: {kind} reloads {err:.2e} from the reference"
                     for kind, err in errors.items() if not err <= asset_tolerance(record, kind)]
    return problems


def _reported_artifacts(report_path: str) -> List[str]:
    """The artifact kinds a release's copy of a report lists (none if it does not load: the
    checksums already report that file)."""
    try:
        return list(ConversionRecord.load(report_path).artifacts)
    except RecordError:
        return []


# --- publishing the presets ------------------------------------------------------------------

# where ``publish --to`` may point: scheme -> (segments the destination has, how an entry's
# handle is formed from it; keras-hub's upload_preset takes hf://ORG/NAME and
# kaggle://OWNER/MODEL/keras/VARIATION)
PUBLISH_TARGETS = {"hf://": (1, "{to}/{name}", "hf://ORG"),
                   "kaggle://": (2, "{to}/keras/{name}", "kaggle://OWNER/MODEL")}
# what a dry run writes beside the preset folders: {handle: {file: sha256}}
UPLOAD_PLAN = "uploads.json"


def preset_handle(to: str, name: str) -> str:
    """The handle entry ``name`` is uploaded to under ``to`` (``PUBLISH_TARGETS``)."""
    for scheme, (segments, form, example) in PUBLISH_TARGETS.items():
        if to.startswith(scheme):
            parts = to[len(scheme):].strip("/").split("/")
            if len(parts) != segments or not all(parts):
                raise ConversionError(f"--to {to}: expected {example}")
            return form.format(to=to.rstrip("/"), name=name)
    raise ConversionError(f"--to {to}: expected "
                          + " or ".join(example for _, _, example in PUBLISH_TARGETS.values()))


def upload_preset_keeping_card(handle: str, folder: str) -> None:
    """``keras_hub.upload_preset(handle, folder)``, our README.md kept as the model card.

    keras-hub's upload to a Hugging Face repository with no README.md yet writes a generated
    card over the folder's README.md, uploads it, then deletes the folder's README.md
    (keras_hub/src/utils/preset_utils.py: ``upload_preset``, ``create_model_card``,
    ``delete_model_card``). So the repository is created and our card uploaded first: keras-hub
    then finds a card and uploads the folder as it is. Kaggle takes the folder as it is."""
    import keras_hub

    if handle.startswith("hf://"):
        import huggingface_hub

        repo = huggingface_hub.create_repo(handle[len("hf://"):], exist_ok=True)
        huggingface_hub.upload_file(path_or_fileobj=os.path.join(folder, PRESET_CARD),
                                    path_in_repo=PRESET_CARD, repo_id=repo.repo_id,
                                    commit_message="Model card")
    keras_hub.upload_preset(handle, folder)


def publish_release(release_dir: str, to: str, dry_run: Optional[str] = None,
                    log=print) -> Dict[str, Dict[str, str]]:
    """Upload every entry's keras-hub preset of a verified release to ``to`` (``hf://ORG`` or
    ``kaggle://OWNER/MODEL``) through ``keras_hub.upload_preset``, each with its model card;
    returns ``{handle: {file: sha256}}``. With ``dry_run`` (a new folder) nothing is uploaded:
    each preset folder is written there exactly as it would be uploaded, with that plan as
    ``uploads.json``. ConversionError (one line) on a release that does not verify."""
    remove_stale_scratch(tempfile.gettempdir(), log, TEMP_PREFIXES)  # a killed run's
    if dry_run is not None:  # what a killed dry run (or build) left beside it goes first
        remove_stale_scratch(os.path.dirname(os.path.abspath(dry_run)), log)
    problem = _not_a_release_folder(release_dir)
    if problem:
        raise ConversionError(problem)
    # the options before the release is verified: that reads every asset (minutes for the
    # whole zoo), and a typo should not wait for it
    preset_handle(to, "NAME")
    if dry_run is not None and os.path.lexists(dry_run) and not (
            os.path.isdir(dry_run) and not os.path.islink(dry_run) and not os.listdir(dry_run)):
        found = ("a folder that is not empty" if os.path.isdir(dry_run)
                 and not os.path.islink(dry_run) else
                 "a link" if os.path.islink(dry_run) else "a file")
        raise ConversionError(f"--dry-run {dry_run}: expected a new or empty folder, found "
                              f"{found}; choose another folder")
    problems = verify_release(release_dir)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConversionError(f"{release_dir}: does not verify: {problems[0]}{more}; run "
                              f"scripts/release.py verify")
    with open(os.path.join(release_dir, "manifest.json")) as handle:
        manifest = json.load(handle)
    presets = sorted((asset["entry"], name) for name, asset in manifest["assets"].items()
                     if asset["kind"] == "kerashub")
    if not presets:
        raise ConversionError(f"{release_dir}: holds no keras-hub presets (*"
                              f"{ENTRY_ASSETS['kerashub']}); rebuild it with this version")
    handles = {entry: preset_handle(to, entry) for entry, _ in presets}
    plan: Dict[str, Dict[str, str]] = {}
    scratch = staged = None
    try:
        with stop_signals_deferred():  # a stop waits until the finally knows both folders
            scratch = make_temp_scratch(PUBLISH_SCRATCH)
            if dry_run is not None:  # written in full beside it, then moved into place
                parent = os.path.dirname(os.path.abspath(dry_run))
                os.makedirs(parent, exist_ok=True)
                staged = make_scratch_folder(PUBLISH_PARTIAL, parent)
        for entry, tar_name in presets:
            tar_path = whole_asset(release_dir, tar_name, manifest["assets"][tar_name], scratch)
            folder = untar_preset(tar_path, os.path.join(scratch, entry))
            if os.path.dirname(tar_path) == scratch:  # joined from its parts: done with it
                os.remove(tar_path)
            plan[handles[entry]] = {name: sha256_file(os.path.join(folder, name))
                                    for name in sorted(os.listdir(folder))}
            if dry_run is None:
                log(f"{entry}: uploading to {handles[entry]}")
                try:
                    upload_preset_keeping_card(handles[entry], folder)
                except Exception as error:  # the hub clients raise many types
                    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                    raise ConversionError(f"{handles[entry]}: upload failed ({first[:200]}); "
                                          f"check the token and the network, then rerun "
                                          f"(uploads of unchanged files are skipped)") from None
            else:
                log(f"{entry}: would upload to {handles[entry]}")
                shutil.copytree(folder, os.path.join(staged, entry))
        if dry_run is not None:
            with open(os.path.join(staged, UPLOAD_PLAN), "w") as handle:
                json.dump(plan, handle, indent=2)
                handle.write("\n")
            if os.path.isdir(dry_run):
                os.rmdir(dry_run)  # empty, checked above
            _move_into_place(staged, dry_run)
        return plan
    finally:
        if scratch is not None:
            remove_scratch_folder(scratch)
        if staged is not None:
            remove_scratch_folder(staged)


# --- documents ---------------------------------------------------------------------------------

def render_model_zoo(manifest: dict, base_url: str) -> str:
    """MODEL_ZOO.md in the seed's table layout, with asset links and a parity column."""
    base = base_url.rstrip("/")
    families = sorted({info["entry"].get("family", "v1")
                       for info in manifest["entries"].values()}) or ["v1"]
    upstreams = " and ".join(FAMILIES[f]["upstream"] for f in families)
    built = (f"videomae-convert {manifest.get('converter_version')} "
             f"(commit {manifest.get('git_commit') or 'unknown'})")
    converted = sorted({str(info["versions"].get("videomae-convert"))
                        for info in manifest["entries"].values()})
    if converted in ([], [str(manifest.get("converter_version"))]):
        by = f"by {built}."
    else:  # the builder's version is not the one every entry was converted with
        which = " (each model card says which)" if len(converted) > 1 else ""
        by = f"by videomae-convert {', '.join(converted)}{which}; released by {built}."
    lines = ["# TF VideoMAE model zoo", "",
             f"Converted from the official {upstreams} checkpoints {by}",
             "Parity: max abs error of the TF model against a float64 run of the torch "
             "reference on seeded random inputs (each model card says which); torch fp32's own "
             "error beside it.",
             "SavedModels: FT takes `video` and returns `{\"logits\"}`; PT takes `video` and "
             "`mask` and returns `{\"pixels\"}`, the masked patches' normalised pixels "
             "(earlier conversions named that output `logits`).", ""]
    if any(PARTS_KEY in asset for asset in manifest["assets"].values()):
        lines += [PARTS_NOTE.format(part_size=manifest.get(PART_SIZE_KEY), name="NAME"), ""]
    for key, facts in DATASETS.items():
        names = [n for n in sorted(manifest["entries"])
                 if manifest["entries"][n]["entry"]["dataset"] == key]
        if not names:
            continue
        lines += [f"## {facts.title}", "",
                  "| Model | Mode | Backbone | PT epochs | mask | eval views | Top-1/Top-5 "
                  "(upstream) | parity (tf / torch fp32) | SavedModel | Keras | weights |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            info = manifest["entries"][name]
            entry = info["entry"]
            encoder = entry.get("encoder_only", False)  # features: no head, no accuracy
            acc = (f"{entry['top1']}/{_or_dash(entry['top5'])}"
                   if entry["mode"] == "FT" and entry["top1"] and not encoder else "-")
            recipe = entry.get("recipe") or entry["mode"]  # DL: distilled, not fine-tuned
            mode = f"{recipe} encoder" if encoder else recipe
            parity = info["parity"]
            links = [_asset_link("zip", f"{name}.savedmodel.zip", manifest, base),
                     _asset_link(".keras", f"{name}.keras", manifest, base),
                     _asset_link(".weights.h5", f"{name}.weights.h5", manifest, base)]
            for kind in LITERT_KINDS:
                asset = f"{name}{SUFFIXES[kind]}"
                if asset in manifest["assets"]:
                    links[-1] += " " + _asset_link(SUFFIXES[kind], asset, manifest, base)
            if f"{name}{ENTRY_ASSETS['kerashub']}" in manifest["assets"]:
                links[-1] += " " + _asset_link("keras-hub", f"{name}{ENTRY_ASSETS['kerashub']}",
                                               manifest, base)
            source = " (synthetic)" if info.get("synthetic_seed") is not None else ""
            lines.append(f"| [{name}]({base}/{name}.md){source} | {mode} | "
                         f"{ALL_SIZES[entry['size']].title} | {_or_dash(entry['pt_epochs'])} | "
                         f"{_or_dash(entry['mask_ratio'])} | {entry['eval_views']} | {acc} | "
                         f"{parity['tf_err_vs_f64']:.1e} / {parity['torch_err_vs_f64']:.1e} | "
                         + " | ".join(links) + " |")
        lines.append("")
    return "\n".join(lines)


# how a release's assets in parts are told apart and joined (a model card, MODEL_ZOO.md)
PARTS_NOTE = ("Files of this release over {part_size} bytes ship as numbered parts "
              "(`{name}.keras.part-001-of-003`, ...): `cat` them in order to get the file "
              "(`cat {name}.keras.part-* > {name}.keras`); a zoo name or release URL given to "
              "`tf_models` fetches and joins them itself, and `manifest.json` records each "
              "whole file's sha256.")


def _asset_link(label: str, name: str, manifest: dict, base: str) -> str:
    """A markdown link to asset ``name``, or ``label`` and a link per part when it ships in
    parts."""
    parts = (manifest["assets"].get(name) or {}).get(PARTS_KEY)
    if not parts:
        return f"[{label}]({base}/{name})"
    return f"{label} in {len(parts)} parts " + " ".join(
        f"[{index}]({base}/{part})" for index, part in enumerate(parts, 1))


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def render_model_card(entry: Entry, report: ConversionRecord, base_url: str,
                      errors: Dict[str, float], preset_class: Optional[str] = None,
                      part_size: Optional[int] = None) -> str:
    """A model card: architecture, input contract, preprocessing, accuracy, loading, checks;
    with ``preset_class`` (the Keras class of the entry's keras-hub preset) how to load it;
    with ``part_size`` (the release's, when it splits assets) how its parts join."""
    dims = entry.dims
    facts = DATASETS[entry.dataset]
    size = ALL_SIZES[entry.size]
    kind = kind_of(entry)
    card = kind.card(entry)
    synthetic = report.source.synthetic_seed is not None
    parity = report.parity
    # a distilled classifier is not a fine-tuned one: its recipe names it
    title = (f"{RECIPES[entry.recipe].title} classifier" if kind.name == "classifier"
             else kind.title)
    lines = [f"# {entry.name}", "",
             f"{FAMILIES[entry.family]['title']} {size.title} {title} on {facts.title}, "
             "converted to TensorFlow / Keras 3 by videomae-convert.", "",
             entry.description, "",
             f"Upstream: {FAMILIES[entry.family]['upstream']} (code licence "
             f"{FAMILIES[entry.family]['code_licence']}); the weights are licensed "
             f"{FAMILIES[entry.family]['weights_licence']} upstream, and so are these.", ""]
    if synthetic:
        lines += ["**Converted from a synthetic checkpoint (random weights, seed "
                  f"{report.source.synthetic_seed}): a test of the pipeline, not a usable "
                  "model.**", ""]
    lines += ["## Architecture", "",
              f"- Encoder: ViT, embed dim {dims['embed_dim']}, {dims['depth']} blocks, "
              f"{dims['num_heads']} heads, MLP ratio {size.mlp_ratio:g}, LayerNorm eps 1e-6, "
              "exact GELU.",
              f"- Tubelets {entry.tubelet_size}x{entry.patch_size}x{entry.patch_size} -> "
              f"{entry.num_patches} tokens; fixed sinusoid position table."]
    lines += card.architecture
    lines += ["", "## Input contract", "", kind.video_contract(entry)]
    lines += card.contract
    # the test views of the dataset's classifier (none for V2's unlabelled pre-training mix)
    views = (f" Evaluation views upstream: {entry.eval_views} "
             f"({entry.test.describe(entry.num_frames)})." if facts.labelled else "")
    lines += ["", "## Preprocessing", "",
              f"Frames scaled to [0, 1], then mean {facts.mean} and std {facts.std}.{views}", "",
              "## Accuracy (reported upstream)", ""]
    lines += card.accuracy
    lines += ["", "## Loading", "", "```python",
              "import tensorflow as tf, keras, tf_models",
              f"serve = tf.saved_model.load('{entry.name}').signatures['serving_default']  "
              "# unzipped",
              f"model = keras.saving.load_model('{entry.name}.keras')", "```", ""]
    if part_size is not None:
        lines += [PARTS_NOTE.format(part_size=part_size, name=entry.name), ""]
    if preset_class is not None:
        raw = (" Its preprocessor takes raw uint8 frames `[batch, frames, height, width, 3]`"
               " in `predict` and `fit` (other sizes resized on the short side and centre-"
               "cropped)." if kind_of(entry).name == "classifier" else "")
        lines += [f"`{entry.name}.kerashub.tar` unpacks to the keras-hub preset folder "
                  f"`{entry.name}/` (published as `hf://ORG/{entry.name}`)." + raw, "",
                  "```python", "import keras_hub, tf_models",
                  f"model = tf_models.{preset_class}.from_preset('{entry.name}')  "
                  "# or 'hf://ORG/...'",
                  f"backbone = keras_hub.models.Backbone.from_preset('{entry.name}')", "```",
                  ""]
    if "litert" in report.artifacts:
        outputs = kind.litert_outputs
        named = " and ".join(f"`{litert_output_name(i)}` (`{name}` above)"
                             for i, name in enumerate(outputs))
        lines += [f"`{entry.name}.tflite`: LiteRT, fp32, dynamic batch (resize the input to "
                  "the batch you need). It has no signature: its input is `video` above, "
                  f"and LiteRT names its output{'s' if len(outputs) > 1 else ''} {named}"
                  f"{', in that order' if len(outputs) > 1 else ''}:", "", "```python",
                  "from ai_edge_litert.interpreter import Interpreter  # or tf.lite.Interpreter",
                  f"interpreter = Interpreter(model_path='{entry.name}.tflite')",
                  "index = interpreter.get_input_details()[0]['index']",
                  f"interpreter.resize_tensor_input(index, [1, {entry.num_frames}, "
                  f"{entry.img_size}, {entry.img_size}, 3])",
                  "interpreter.allocate_tensors()",
                  "interpreter.set_tensor(index, video)",
                  "interpreter.invoke()",
                  f"{outputs[0]} = interpreter.get_tensor("
                  "interpreter.get_output_details()[0]['index'])", "```", ""]
    from .litert import QUANTIZATIONS

    for mode in QUANTIZED_MODES:
        kind = quantized_kind(mode)
        check = report.reload_checks.get(kind)
        if kind in report.artifacts and check is not None:
            lines += [f"`{entry.name}{SUFFIXES[kind]}`: the same with "
                      f"{QUANTIZATIONS[mode]['weights']} weights, smaller; not held to parity: "
                      f"{check.quantized_summary()}.", ""]
    lines += ["## How it was verified", "",
              f"- Source sha256 `{report.source.sha256}`.",
              f"- Parity on seeded random inputs ({', '.join(report.parity_inputs.cases)},"
              f" batch {report.parity_inputs.batch}): TF error vs float64 "
              f"{parity.tf_err_vs_f64:.2e}{_float64_where(report.parity_inputs)}, "
              f"vs torch fp32 {parity.max_abs:.2e}, torch fp32's own error "
              f"{parity.torch_err_vs_f64:.2e}, tolerance {parity.tolerance:.0e}.",
              "- Each asset reloaded in a fresh process and re-checked against the reference: "
              + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()) + ".",
              f"- Converted with {', '.join(f'{k} {v}' for k, v in report.versions.items())}.",
              ""]
    return "\n".join(lines)

