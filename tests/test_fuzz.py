"""A share of the seeded checkpoint fuzzing (tests/fuzzing.py) in the fast tier.

Each case is a corrupted copy of a valid tiny checkpoint, converted through the command line
(click's CliRunner, in this process, to stay fast; ``scripts/fuzz.py`` runs hundreds in child
processes with crash and hang detection). Every case must end as a valid conversion or one
clean ``error:`` line, with nothing under a final name and nothing hidden left in --out; a
category whose damage leaves no valid checkpoint (``fuzzing.NEVER_CONVERTS``) must end in the
error, and the unchanged control must convert.
"""

import pytest

import fuzzing

# A fixed share of scripts/fuzz.py's seeds (same numbering, every category): two per damaging
# category, chosen among those that end in an error, plus one that converts (seed 2: a zeroed
# byte in tensor data) and the control (seed 17: the valid file, which must convert); a
# conversion costs ~10 s, an error well under one.
SEEDS = (0, 72, 1, 19, 2, 21, 39, 4, 22, 5, 23, 24, 42, 7, 43, 8, 26, 9, 27, 10, 28, 83, 101,
         12, 30, 13, 31, 14, 32, 15, 51, 16, 34, 17)
CATEGORIES = list(fuzzing.CATEGORIES)


def _params():
    # every category must end clean, the renamed / retyped / missing tensors included: the
    # reader's name, shape and dtype check runs before torch touches a tensor
    for seed in SEEDS:
        category = CATEGORIES[seed % len(CATEGORIES)]
        yield pytest.param(seed, id=f"{seed}-{category.replace(' ', '_')}")


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return fuzzing.make_bases(str(tmp_path_factory.mktemp("fuzz_bases")))


@pytest.mark.parametrize("seed", _params())
def test_corrupted_checkpoint_converts_or_fails_cleanly(seed, bases, tmp_path):
    case = fuzzing.make_case(seed, bases, str(tmp_path / "in"))
    outcome = fuzzing.run_case_in_process(case, str(tmp_path / "out"))
    # a case whose damage leaves no valid checkpoint must fail, and the control convert
    assert outcome.outcome in fuzzing.expected_outcomes(case.category), \
        f"[{case.category}] {case.description}: {outcome.outcome}: {outcome.detail}"


def test_same_seed_gives_the_same_bytes(bases, tmp_path):
    import hashlib
    import os

    def digest(path):
        if os.path.isdir(path):
            return sorted((name, digest(os.path.join(path, name))) for name in os.listdir(path))
        if not os.path.exists(path):
            return None
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()

    for seed in (0, 1, 4, 14):
        first = fuzzing.make_case(seed, bases, str(tmp_path / f"a{seed}"))
        second = fuzzing.make_case(seed, bases, str(tmp_path / f"b{seed}"))
        assert first.description == second.description
        assert digest(first.path) == digest(second.path)


def test_classify_flags_a_leftover_and_a_partial_artifact(tmp_path):
    case = fuzzing.FuzzCase(0, "bit flips", "x", "x.pth")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".TFVideoMAE_T_K400_4x32_FT.partial-abc").mkdir()
    assert fuzzing.classify(case, str(out), 2, "error: bad\n", 1.0).outcome == "leftover temp"
    (out / "TFVideoMAE_T_K400_4x32_FT.weights.h5").write_text("x")
    assert fuzzing.classify(case, str(out), 2, "error: bad\n", 1.0).outcome == \
        "partial artifact"
    assert fuzzing.classify(case, str(tmp_path / "none"), 1,
                            "Traceback (most recent call last):\n  x\nValueError\n",
                            1.0).outcome == "traceback"
    assert fuzzing.classify(case, str(tmp_path / "none"), -11, "", 1.0).outcome == "crash"
    assert fuzzing.classify(case, str(tmp_path / "none"), None, "", 9.0, True).outcome == "hang"
    assert fuzzing.classify(case, str(tmp_path / "none"), 2, "error: bad\n", 1.0).outcome == \
        "clean error"


# --- the consumer side: damaged or hostile presets, .keras and .weights.h5 files -------------
# seeds 0..14 cover every kind (n % 3) in every category (n // 3 % 5) once
CONSUMER_SEEDS = tuple(range(15))


@pytest.fixture(scope="module")
def consumer_bases(tmp_path_factory):
    return fuzzing.make_consumer_bases(str(tmp_path_factory.mktemp("consumer_bases")))


@pytest.mark.parametrize("seed", CONSUMER_SEEDS)
def test_damaged_preset_or_model_file_loads_or_fails_in_one_line(seed, consumer_bases,
                                                                 tmp_path):
    case = fuzzing.make_consumer_case(seed, consumer_bases, str(tmp_path / "case"))
    outcome = fuzzing.run_consumer_case(case)
    assert outcome.outcome in fuzzing.GOOD_OUTCOMES, \
        f"[{case.category}] {case.description}: {outcome.outcome}: {outcome.detail}"
