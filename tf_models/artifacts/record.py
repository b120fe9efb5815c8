"""The conversion report: what one conversion produced, as one typed definition (torch-free).

``videomae-convert`` builds a ``ConversionRecord`` and its export step completes and writes it
as ``NAME.json``; skip checks, ``--all``, the release build, ``from_preset``, the video tools
and ``videomae-reconstruct`` read it back through ``ConversionRecord.load`` (or
``load_report`` beside an artifact). Nobody reads the report by string keys.

The file layout is that of the first reports (``REPORT_FORMAT`` 1), so every report written
so far loads; a report without one of the required fields, or from a newer format, is one
clear error naming the file.

A child process of ``--all`` hands its result back as a ``RunOutcome`` file, never through
its printed output.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional

import numpy as np

from .files import replaced_when_written
from .names import report_path

REPORT_FORMAT = 1
# what the reload checks compared each artifact with (``ConversionRecord.reference``): upstream's
# torch model (a conversion), or the in-memory Keras model an export loaded (``videomae-export``:
# there is no torch model, and the record holds no torch parity)
REFERENCES = {"torch": "upstream's PyTorch model (float64 and float32), parity in the report",
              "keras": "the in-memory Keras model the artifacts were written from (its own "
                       "float32 outputs); no torch model, no torch parity"}
# the artifact kinds a complete record lists, in the order they are moved into place
ARTIFACT_KINDS = ("savedmodel", "weights", "keras")


class RecordError(ValueError):
    """A report file that is missing, unreadable, or not a conversion report of this format."""


@dataclass
class SourceRecord:
    """Where the weights came from: a file (path, sha256) or a seeded synthetic checkpoint."""

    sha256: str
    path: Optional[str] = None
    synthetic_seed: Optional[int] = None
    layout: str = "upstream"          # 'upstream' or 'transformers' names; 'keras': an
    #                                   export's Keras file (an export from a transformers-format
    #                                   model says 'transformers')
    container_key: Optional[str] = None
    dtypes: List[str] = field(default_factory=list)


@dataclass
class ParitySummary:
    """The in-memory Keras model against the torch reference (``ParityReport.to_dict``)."""

    passed: bool
    tolerance: float
    max_abs: float
    tf_err_vs_f64: float
    torch_err_vs_f64: float
    first_divergent_block: Optional[str] = None
    outputs: List[dict] = field(default_factory=list)
    blocks: List[dict] = field(default_factory=list)


@dataclass
class ParityInputs:
    """How the parity inputs were made, so they can be made again (release re-checks)."""

    batch: int
    seed: int
    cases: List[str]
    # the first samples of each case the float64 reference ran on (reports written before it
    # ran on fewer than all of them say nothing: every sample)
    float64_samples: Optional[int] = None


@dataclass
class ReloadCheck:
    """One written artifact, reloaded into fresh objects and compared again.

    ``method``: ``"outputs"`` (``clips`` clips through the reloaded artifact: those float64 ran
    on, every clip of an export; in reports from before 2026-12-04, where ``clips`` is None,
    every parity input; the errors are its own) or ``"variables"`` (every variable bit-identical
    to the checked in-memory model, config equal where the file holds one; ``clips`` clips also
    run through it: none for a conversion's files, one per set of inputs for a keras-hub preset
    and an export's ``.keras``; the errors are those of the in-memory model, which computes the
    same function bit for bit) or ``"bytes"`` (a ``.weights.h5`` holding byte for byte the
    weights inside the ``.keras`` file, which its own check proves; the errors are the in-memory
    model's) or ``"quantized"`` (a ``--litert-quantize`` file: every parity input through it,
    its error measured and held to ``tolerance``, a sanity bound, not the parity tolerance; on
    the ``--video`` clips, ``top1_agreement`` / ``top5_agreement``: the share of clips whose top
    class / set of five top classes is the reference's; ``weights_proven``: how many weights were
read back from the file when it was written, each from the tensor of its layer and within half
a quantisation step of its fp32 value, int8 dequantised, fp16 exactly; None where the file is
the converter's own quantisation, not written from stand-ins, or in reports from before
2026-12-05). ``tf_err_vs_f64`` is None for an export
    (reference "keras": no float64 run); ``max_abs`` is then the error against the in-memory
    Keras model.
    """

    tf_err_vs_f64: Optional[float]
    max_abs: float
    passed: bool
    method: str = "outputs"
    clips: Optional[int] = None
    tolerance: Optional[float] = None  # "quantized": the bound it was held to
    video_clips: Optional[int] = None  # "quantized": clips of real videos compared
    top1_agreement: Optional[float] = None
    top5_agreement: Optional[float] = None
    weights_proven: Optional[int] = None  # "quantized": weights read back from the file


    def quantized_summary(self) -> str:
        """One line on a ``"quantized"`` check: its error, bound and top-k agreement."""
        agreement = (f"top-1 / top-5 agreement {self.top1_agreement:.0%} / "
                     f"{self.top5_agreement:.0%} on {self.video_clips} real-video clip(s)"
                     if self.video_clips else
                     "no top-k agreement measured (a classifier's, with --video)")
        versus = "float64" if self.tf_err_vs_f64 is not None else "the reference"
        weights = (f"; {self.weights_proven} weights read back, each within half a step"
                   if self.weights_proven is not None else "")
        return (f"max |difference| vs {versus} {self.max_abs:.2e} (bound "
                f"{self.tolerance:.2e}){weights}; {agreement}")


@dataclass
class Artifact:
    """One artifact as it was moved into place."""

    sha256: str
    bytes: int


@dataclass
class ConversionRecord:
    """The report of one conversion (``NAME.json``)."""

    entry: dict                       # the zoo entry, ``Entry.to_dict()``
    source: SourceRecord
    versions: Dict[str, str]
    parity: Optional[ParitySummary]   # None for an export (``reference`` "keras")
    notes: List[str]
    parity_inputs: ParityInputs
    reference_fingerprint: Dict[str, Dict[str, dict]]
    seconds: Dict[str, float]
    reload_checks: Dict[str, ReloadCheck] = field(default_factory=dict)
    artifacts: Dict[str, Artifact] = field(default_factory=dict)
    reference: str = "torch"          # a key of ``REFERENCES``

    # the error ``load`` and ``from_json`` raise (the converter's subclass raises its own)
    error = RecordError

    @property
    def name(self) -> str:
        return self.entry["name"]

    @property
    def model_config(self) -> dict:
        """The Keras model's constructor arguments (``Entry.to_dict()["model_config"]``)."""
        config = self.entry.get("model_config")
        if not isinstance(config, dict):
            raise self.error(f"report of {self.name}: its entry has no model_config")
        return dict(config)

    @property
    def dataset(self) -> Optional[str]:
        """The dataset key of the entry (``k400``, ``ssv2``...), when it names one."""
        return self.entry.get("dataset")

    @property
    def mask_ratio(self) -> Optional[float]:
        """The entry's pre-training mask ratio, when it has one."""
        return self.entry.get("mask_ratio")

    def to_json(self) -> dict:
        """The JSON object written as ``NAME.json`` (format ``REPORT_FORMAT``)."""
        return {"report_format": REPORT_FORMAT, "entry": self.entry,
                "source": asdict(self.source), "versions": self.versions,
                "reference": self.reference,
                "reference_is": REFERENCES.get(self.reference, self.reference),
                "parity": None if self.parity is None else asdict(self.parity),
                "notes": self.notes,
                "parity_inputs": asdict(self.parity_inputs),
                "reference_fingerprint": self.reference_fingerprint,
                "seconds": self.seconds,
                "reload_checks": {k: asdict(v) for k, v in self.reload_checks.items()},
                "artifact_bytes": {k: a.bytes for k, a in self.artifacts.items()},
                "artifact_sha256": {k: a.sha256 for k, a in self.artifacts.items()}}

    def save(self, path: str) -> None:
        with open(path, "w") as handle:
            json.dump(self.to_json(), handle, indent=2, default=_json_default)
            handle.write("\n")

    @classmethod
    def from_json(cls, data, path: str = "report") -> "ConversionRecord":
        """A record from a parsed ``NAME.json``; RecordError (one line) when it is not one."""
        if not isinstance(data, dict):
            raise cls.error(f"{path}: holds a {type(data).__name__}, expected a conversion "
                              f"report (a JSON object)")
        found = data.get("report_format", 1)
        if found != REPORT_FORMAT:
            raise cls.error(f"{path}: report format {found!r}, this videomae-convert reads "
                              f"format {REPORT_FORMAT}: convert the entry again with --force")
        try:
            sizes, digests = data.get("artifact_bytes", {}), data.get("artifact_sha256", {})
            return cls(
                entry=_required(data, "entry", dict), source=_build(SourceRecord, data["source"]),
                versions=dict(data["versions"]),
                parity=None if data["parity"] is None else _build(ParitySummary, data["parity"]),
                notes=list(data.get("notes", [])),
                parity_inputs=_build(ParityInputs, data["parity_inputs"]),
                reference_fingerprint=dict(data["reference_fingerprint"]),
                seconds=dict(data.get("seconds", {})),
                reload_checks={k: _build(ReloadCheck, v)
                               for k, v in data.get("reload_checks", {}).items()},
                artifacts={k: Artifact(sha256=digests[k], bytes=int(sizes.get(k, 0)))
                           for k in digests},
                reference=_reference(data))
        except (KeyError, TypeError, ValueError) as error:
            what = error.args[0] if isinstance(error, KeyError) else error
            raise cls.error(f"{path}: not a conversion report of this videomae-convert "
                              f"({what} missing or malformed; an older version may have "
                              f"written it): convert the entry again with --force") from None

    @classmethod
    def load(cls, path: str) -> "ConversionRecord":
        """Read ``NAME.json``; RecordError (one line) when it is missing, unreadable or not a
        conversion report."""
        try:
            with open(path) as handle:
                data = json.load(handle)
        except OSError as error:
            raise cls.error(f"{path}: cannot read the report ({error.strerror or error})") \
                from None
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
            raise cls.error(f"{path}: not a JSON report ({error})") from None
        return cls.from_json(data, path)


def load_report(artifact: str) -> Optional[ConversionRecord]:
    """The report ``NAME.json`` beside an artifact of ``NAME``; None when there is none,
    RecordError (one line) when it is there but not a report."""
    path = report_path(artifact)
    return ConversionRecord.load(path) if os.path.isfile(path) else None


@dataclass
class RunOutcome:
    """What one ``--all`` child did, written to the file its parent named."""

    name: str
    status: str                       # converted / skipped / failed
    message: str = ""
    tf_err_vs_f64: Optional[float] = None

    def save(self, path: str) -> None:
        with replaced_when_written(f"{path}.partial", path) as tmp:
            with open(tmp, "w") as handle:
                json.dump(asdict(self), handle, default=_json_default)

    @classmethod
    def load(cls, path: str) -> Optional["RunOutcome"]:
        """The outcome in ``path``, or None when the child left none (it was killed)."""
        try:
            with open(path) as handle:
                return _build(cls, json.load(handle))
        except (OSError, ValueError, TypeError, KeyError):
            return None


def _reference(data: dict) -> str:
    """The record's reference (reports written before exports existed: torch); a record with
    no torch parity must say that its reference was not torch."""
    reference = data.get("reference", "torch")
    if reference not in REFERENCES:
        raise ValueError(f"reference {reference!r}")
    if data["parity"] is None and reference == "torch":
        raise TypeError("parity")
    return reference


def _required(data: dict, key: str, kind: type):
    value = data[key]
    if not isinstance(value, kind):
        raise TypeError(f"{key} is a {type(value).__name__}")
    return value


def _build(cls, data):
    """``cls(**data)`` with unknown keys ignored (a later field added with a default)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} is a {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
