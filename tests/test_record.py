"""The conversion record (NAME.json) as one typed definition: written by convert, read back by
the skip check, --all, the release build and reconstruct; reports of the first format load."""

import json

import torch  # noqa: F401  (torch side first)

import pytest  # noqa: E402

from converter.export import artifact_paths, verify_artifacts  # noqa: E402
from converter.record import (REPORT_FORMAT, ConversionRecord, RecordError,  # noqa: E402
                              RunOutcome)

from conftest import TINY_FT  # noqa: E402



def test_written_report_loads_into_the_same_record(tiny_converted):
    loaded = ConversionRecord.load(tiny_converted.paths["report"])
    assert loaded == tiny_converted.report
    assert loaded.name == TINY_FT
    assert loaded.zoo_entry().name == TINY_FT
    assert set(loaded.artifacts) == {"savedmodel", "weights", "keras"}
    assert all(a.bytes > 0 and len(a.sha256) == 64 for a in loaded.artifacts.values())
    assert all(check.passed for check in loaded.reload_checks.values())


def test_report_without_a_format_field_loads_as_the_first_format(tiny_converted, tmp_path):
    with open(tiny_converted.paths["report"]) as handle:
        data = json.load(handle)
    assert data.pop("report_format") == REPORT_FORMAT
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert ConversionRecord.load(str(old)) == tiny_converted.report


@pytest.mark.parametrize("edit, phrase", [
    (lambda d: d.pop("parity_inputs"), "parity_inputs missing or malformed"),
    (lambda d: d.pop("source"), "source missing or malformed"),
    (lambda d: d["source"].pop("sha256"), "older version"),
    (lambda d: d.update(report_format=99), "report format 99"),
    (lambda d: d.update(entry=[]), "entry"),
])
def test_report_of_another_format_is_one_clear_error(tiny_converted, tmp_path, edit, phrase):
    with open(tiny_converted.paths["report"]) as handle:
        data = json.load(handle)
    edit(data)
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as raised:
        ConversionRecord.load(str(path))
    message = str(raised.value)
    assert str(path) in message and phrase in message, message
    assert "\n" not in message


def test_unreadable_report_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{ not json")
    with pytest.raises(RecordError, match="not a JSON report"):
        ConversionRecord.load(str(path))
    with pytest.raises(RecordError, match="cannot read the report"):
        ConversionRecord.load(str(tmp_path / "absent.json"))


def test_artifacts_with_an_older_report_do_not_verify_and_say_why(tiny_converted, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_converted.paths["report"].rsplit("/", 1)[0], out)
    report = artifact_paths(str(out), TINY_FT)["report"]
    with open(report) as handle:
        data = json.load(handle)
    del data["reference_fingerprint"]
    with open(report, "w") as handle:
        json.dump(data, handle)
    reason = verify_artifacts(str(out), tiny_converted.entry,
                              {"sha256": tiny_converted.report.source.sha256})
    assert "older version" in reason, reason


def test_run_outcome_round_trips_and_a_missing_file_is_none(tmp_path):
    path = str(tmp_path / "outcome.json")
    assert RunOutcome.load(path) is None
    RunOutcome(TINY_FT, "skipped", "", 1.5e-6).save(path)
    assert RunOutcome.load(path) == RunOutcome(TINY_FT, "skipped", "", 1.5e-6)
    (tmp_path / "outcome.json").write_text("garbage")
    assert RunOutcome.load(path) is None
