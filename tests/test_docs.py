"""The README and docs/ match the console scripts: every option they name exists, every
option a ``--help`` lists is documented, and the defaults they state are the code's."""

import glob
import importlib.util
import os
import re

import click

from conftest import REPO_ROOT

# options the docs name that belong to no script of this repository
OTHER_TOOLS = {
    "--sise",  # README's mistyped-option example
    # ray start / ray get-auth-token (docs/RAY.md)
    "--address", "--head", "--port", "--num-cpus", "--num-gpus", "--object-store-memory",
    "--generate",
}
# maintainer scripts and the test suite's options (docs/BENCHMARKS.md, RELIABILITY.md, VIDEO.md):
# looked up in their sources
OTHER_SOURCES = ("scripts/bench.py", "scripts/bench_peer.py", "scripts/bench_video.py",
                 "scripts/bench_litert.py", "scripts/bench_litert_memory.py",
                 "scripts/bench_pretrain.py", "scripts/all_synthetic.py", "scripts/fuzz.py",
                 "tests/conftest.py")
# our options, spelt with dashes; upstream's are spelt with underscores (--batch_size) and
# are not matched
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w])")


def _console_commands():
    """{name: click command} of every console script and of scripts/release.py."""
    from videomae_cli import convert, export, finetune, reconstruct, video

    commands = {"videomae-convert": convert.convert_command,
                "videomae-reconstruct": reconstruct.reconstruct_command,
                "videomae-predict": video.predict_command,
                "videomae-evaluate": video.evaluate_command,
                "videomae-evaluate merge": video.merge_command,
                "videomae-extract": video.extract_command,
                "videomae-export": export.export_command,
                "videomae-finetune": finetune.finetune_command}
    spec = importlib.util.spec_from_file_location(
        "_release_script", os.path.join(REPO_ROOT, "scripts", "release.py"))
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    group = next(o for o in vars(release).values() if isinstance(o, click.Group))
    commands["release.py"] = group
    commands.update({f"release.py {name}": c for name, c in group.commands.items()})
    return commands


def _options(command, hidden=False):
    return {o for p in command.params if hidden or not getattr(p, "hidden", False)
            for o in p.opts + p.secondary_opts if o.startswith("--")}


def _docs():
    paths = [os.path.join(REPO_ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
    return {os.path.relpath(p, REPO_ROOT): open(p, encoding="utf-8").read() for p in paths}


def test_every_option_the_docs_name_exists():
    ours = set().union(*(_options(c, hidden=True) for c in _console_commands().values()))
    others = set(OPTION.findall("".join(
        open(os.path.join(REPO_ROOT, name), encoding="utf-8").read()
        for name in OTHER_SOURCES)))
    unknown = sorted({(name, option) for name, text in _docs().items()
                      for option in OPTION.findall(text)
                      if option not in ours and option not in OTHER_TOOLS
                      and option not in others and option != "--help"})
    assert not unknown, f"options named in the docs that no command has: {unknown}"


def test_every_option_a_help_lists_is_documented():
    documented = set(OPTION.findall("".join(_docs().values())))
    missing = sorted((name, option) for name, command in _console_commands().items()
                     for option in _options(command) - documented)
    assert not missing, f"options --help lists that README.md and docs/ never name: {missing}"


def test_finetune_defaults_are_the_python_api_s_and_the_recipe_s():
    """``videomae-finetune`` and ``FinetuneConfig`` start the same run (README: the recipe's
    numbers are the defaults of both), and both take the recipe table's."""
    import dataclasses

    from tf_models.train import RECIPE, FinetuneConfig
    from videomae_cli.finetune import finetune_command

    fields = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    renamed = {"model_spec": "model", "out_dir": "out"}
    skipped = {"as_json", "quiet", "verbose", "no_augment", "no_rand_augment", "mixed_precision"}
    differ = {}
    for param in finetune_command.params:
        if param.name in skipped or param.required:
            continue
        field = renamed.get(param.name, param.name)
        if param.default != fields[field]:
            differ[param.name] = (param.default, fields[field])
    assert not differ, f"videomae-finetune default vs FinetuneConfig: {differ}"
    assert fields["num_sample"] == RECIPE["num_sample"]
    assert fields["warmup_epochs"] == RECIPE["warmup_epochs"]


def _readme_zoo():
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read().split("## The zoo", 1)[1].split("\n## ", 1)[0]


def _listed(value):
    return "-" if value is None else f"{value:.1f}"


def _zoo_listing():
    """``videomae-convert --list --json``'s records, by name (the zoo table's numbers)."""
    import json

    from videomae_cli.quiet import load_stdlib_leaf
    from videomae_cli.zoo_table import zoo_table

    lines = load_stdlib_leaf("converter.upstream").listing(zoo_table(), True)
    return {e["name"]: e for e in map(json.loads, lines)}


def test_the_readme_zoo_tables_are_the_zoo_s_numbers():
    """Classes, views, PT epochs, mask ratios and upstream Top-1/Top-5 in README "The zoo"
    equal the zoo table's (``--list --json``), row by row, and every entry is in a row."""
    from tf_models.presets import DATASETS

    zoo = _zoo_listing()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in _readme_zoo().splitlines() if line.startswith("| ")]
    seen = set()
    for cells in rows:
        if cells[0].startswith("`TFVideoMAE"):  # a V2 entry: name, classes, views, top-1/5
            e = zoo[cells[0].strip("`")]
            assert cells[1] == str(e["num_classes"] or "-"), cells
            assert cells[2].split()[0] == (e["views"] or "-"), cells
            if e["num_classes"]:
                assert cells[3] == f"{_listed(e['top1'])}/{_listed(e['top5'])}", cells
            seen.add(e["name"])
        elif cells[0] not in ("Dataset", "Entry"):  # a V1 dataset: one row, every size
            dataset = next(d for d in DATASETS.values() if d.title == cells[0])
            entries = [e for e in zoo.values()
                       if e["family"] == "v1" and e["dataset"] == dataset.key]
            assert cells[2] == ", ".join(dict.fromkeys(e["size"] for e in entries)), cells
            for e in entries:
                assert cells[1] == str(dataset.num_classes), cells
                assert cells[3] == str(e["pt_epochs"]), cells
                assert float(cells[4]) == e["mask_ratio"], cells
                if e["mode"] == "FT":
                    assert cells[5] == e["views"], cells
                    assert f"{e['size']} {e['top1']:.1f}/{e['top5']:.1f}" in cells[6], cells
            seen.update(e["name"] for e in entries)
    assert seen == set(zoo), set(zoo) ^ seen


def test_convert_help_says_checkpoint_takes_every_layout_the_readme_lists():
    """README: ``--checkpoint`` takes upstream's .pth and transformers-format copies (a folder,
    or one .safetensors / .bin file); its --help said ".pth" alone."""
    from videomae_cli.convert import convert_command

    text = next(p for p in convert_command.params if p.name == "checkpoint").help
    for layout in (".pth", "transformers", "folder", "safetensors", ".bin"):
        assert layout in text, (layout, text)


def _module_files():
    """{module name: its files} of the library and the console scripts (a package's name:
    its __init__.py)."""
    found = {}
    for top in ("converter", "tf_models", "torch_reference", "videomae_cli"):
        for folder, _, files in os.walk(os.path.join(REPO_ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    stem = name[:-3] if name != "__init__.py" else os.path.basename(folder)
                    found.setdefault(stem, []).append(os.path.join(folder, name))
    return found


def _defines(path, name):
    if os.path.basename(path) == "__init__.py":  # a package: its submodules too
        folder = os.path.dirname(path)
        if os.path.exists(os.path.join(folder, name + ".py")) or os.path.isdir(
                os.path.join(folder, name)):
            return True
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return re.search(rf"(def|class)\s+{name}\b|^\s*{name}\s*[:=]|^\s*(from|import)\b[^\n]*"
                     rf"\b{name}\b", text, re.M) is not None


def test_every_module_attribute_the_docs_name_exists():
    """`module.NAME` in README.md and docs/ (``zoo.PARITY_ATOL``, ``kinds.kind_of``) names
    something that module defines or imports (docs/ARCHITECTURE.md said ``zoo.UPSTREAM_FILES``,
    which lives in ``upstream.py``)."""
    modules = _module_files()
    not_attributes = {"py", "keras", "safetensors", "pkl", "json", "export", "save",
                      "quantize", "conversion_notes"}  # file names; a Keras model's methods
    missing = sorted(
        (doc, f"{module}.{name}") for doc, text in _docs().items()
        for module, name in set(re.findall(r"`([a-z_]+)\.([A-Za-z_]\w*)(?:\([^`]*\))?`", text))
        if module in modules and name not in not_attributes
        and not any(_defines(path, name) for path in modules[module]))
    assert not missing, f"module attributes the docs name that do not exist: {missing}"


def test_every_model_option_the_readme_says_takes_transformers_copies_says_so_in_its_help():
    """README "Transformers checkpoints straight in": the ``--model`` of these six commands
    takes a transformers-format folder or hf:// repository; videomae-reconstruct's --help
    left it out."""
    commands = _console_commands()
    for name in ("videomae-predict", "videomae-evaluate", "videomae-extract", "videomae-export",
                 "videomae-finetune", "videomae-reconstruct"):
        text = next(p for p in commands[name].params if "--model" in p.opts).help
        assert "transformers" in text, (name, text)
