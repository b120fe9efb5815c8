"""The conversion report as the converter reads it: ``tf_models.artifacts.record``'s typed
definition (one definition for both sides), with the converter's error type (exit code 2) and
the way back from a report to its zoo entry."""

from __future__ import annotations

from tf_models.artifacts import record as _record
from tf_models.artifacts.record import (ARTIFACT_KINDS, REPORT_FORMAT,  # noqa: F401
                                        Artifact, ParityInputs, ParitySummary, ReloadCheck,
                                        RunOutcome, SourceRecord)

from .errors import ConversionError


class RecordError(ConversionError, _record.RecordError):
    """A report file that is missing, unreadable, or not a conversion report of this format."""


class ConversionRecord(_record.ConversionRecord):
    """``tf_models.artifacts.record.ConversionRecord``, raising the converter's RecordError."""

    error = RecordError

    def zoo_entry(self):
        """The zoo Entry this record is for (encoder-only and raw-frames variants included)."""
        from .zoo import conversion_entry

        entry = conversion_entry(self.name)
        return entry.raw_frames_variant() if self.entry.get("raw_frames") else entry
