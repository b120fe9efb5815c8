"""The zoo table: every fact about a model family, a size, a dataset and a published entry.

One row per fact, torch-free and stdlib-only; everything else reads it: ``from_preset``
(names), ``tf_models.video`` (class names, test protocol, mean/std, names -> datasets),
``converter.zoo`` (which adds only what a conversion needs: upstream files and parity
tolerances) and the CLIs' choices. Each published entry is one row in ``RELEASES``: V1's rows
name a pre-training run and its PT / FT pair, VideoMAE V2's name one model each (a recipe, an
intermediate fine-tuning stage, a head mapped from another dataset's), see ``Release``.

This module imports nothing from its package and nothing outside the standard library, so
``videomae_cli`` can read it before TensorFlow starts (``videomae_cli.zoo_table``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

# Upstream normalisation (datasets/*.py): /255, then ImageNet mean and std. The 0.5 values in
# upstream's `_cfg` are unused metadata.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Model families: the prefix of their published names and where their checkpoints come from.
# Licences: V1's repository and weights are CC BY-NC 4.0; V2's code is MIT (its LICENSE), its
# weights CC BY-NC 4.0 (the Hub model cards of OpenGVLab/VideoMAE2 and OpenGVLab/VideoMAEv2-*).
FAMILIES: Dict[str, dict] = {
    "v1": dict(prefix="TFVideoMAE", title="VideoMAE", upstream="MCG-NJU/VideoMAE",
               code_licence="CC BY-NC 4.0", weights_licence="CC BY-NC 4.0"),
    "v2": dict(prefix="TFVideoMAEv2", title="VideoMAE V2", upstream="OpenGVLab/VideoMAEv2",
               code_licence="MIT", weights_licence="CC BY-NC 4.0"),
}


@dataclass(frozen=True)
class Size:
    """One model size: encoder and decoder shapes (upstream factories; ViT-S has 6 heads
    upstream, not the 16 a transformers config gives it). Decoder depth is the released runs'
    choice (upstream's factory default is 8)."""

    title: str
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_num_heads: int
    decoder_depth: int
    patch_size: int = 16
    mlp_ratio: float = 4.0

    @property
    def dims(self) -> Dict[str, int]:
        """The encoder and decoder shapes as one dict (``embed_dim``, ``depth``, ...)."""
        return dict(embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads,
                    decoder_embed_dim=self.decoder_embed_dim,
                    decoder_num_heads=self.decoder_num_heads, decoder_depth=self.decoder_depth)


SIZES: Dict[str, Size] = {
    "S": Size("ViT-S", 384, 12, 6, decoder_embed_dim=192, decoder_num_heads=3, decoder_depth=4),
    "B": Size("ViT-B", 768, 12, 12, decoder_embed_dim=384, decoder_num_heads=6, decoder_depth=4),
    "L": Size("ViT-L", 1024, 24, 16, decoder_embed_dim=512, decoder_num_heads=8,
              decoder_depth=12),
    "H": Size("ViT-H", 1280, 32, 16, decoder_embed_dim=640, decoder_num_heads=8,
              decoder_depth=12),
    # V2 vit_giant_patch14_224 / pretrain_videomae_giant_patch14_224 (decoder depth 4 from
    # scripts/pretrain/vit_g_hybrid_pt.sh); hidden int(1408 * 48 / 11) = 6144
    "g": Size("ViT-g", 1408, 40, 16, decoder_embed_dim=512, decoder_num_heads=8,
              decoder_depth=4, patch_size=14, mlp_ratio=48 / 11),
}
# Tiny test-only sizes: the same code path in seconds (never published). ``Tg`` is shaped
# like ViT-g (patch 14, mlp_ratio 48/11: hidden int(44 * 48 / 11) = 192).
TEST_SIZES: Dict[str, Size] = {
    "T": Size("ViT-Tiny (test)", 48, 2, 3, decoder_embed_dim=24, decoder_num_heads=2,
              decoder_depth=1),
    "Tg": Size("ViT-Tiny-g (test)", 44, 2, 2, decoder_embed_dim=24, decoder_num_heads=2,
               decoder_depth=1, patch_size=14, mlp_ratio=48 / 11),
}
ALL_SIZES: Dict[str, Size] = {**SIZES, **TEST_SIZES}

# Upstream's fine-tuning recipe (run_class_finetuning.py defaults: drop_path 0.1, layer_decay
# 0.75, fc_drop_rate 0.0, init_scale 0.001, AdamW with weight_decay 0.05; the released ViT-H
# K400 script passes drop_path 0.2 and fc_drop_rate 0.5).
FINETUNE_DEFAULTS: Dict[str, dict] = {
    size: dict(drop_path_rate=0.1, dropout=0.0, layer_decay=0.75, weight_decay=0.05)
    for size in ("S", "B", "L", "T")}
FINETUNE_DEFAULTS["H"] = dict(drop_path_rate=0.2, dropout=0.5, layer_decay=0.75,
                              weight_decay=0.05)
# Upstream's pre-training recipe (run_mae_pretraining.py, V1 and V2 alike): AdamW with eps
# 1e-8 and weight decay 0.05, betas 0.9 / 0.95 (every released pretrain.sh passes --opt_betas
# 0.9 0.95), --lr 1.5e-4 per 256 clips, scaled by the total batch (lr * batch / 256); the
# loss is the mean squared error to the masked patches' normalised pixels
# (engine_for_pretraining.py, nn.MSELoss).
PRETRAIN_DEFAULTS: dict = dict(learning_rate_per_256=1.5e-4, beta_1=0.9, beta_2=0.95,
                               epsilon=1e-8, weight_decay=0.05)
HEAD_INIT_SCALE = 0.001  # upstream multiplies the new head's trunc-normal(0.02) init by this
# What the recipe's optimiser settings may be, as click.FloatRange's keywords (read by
# videomae-finetune's --layer-decay / --weight-decay and tf_models.layer_decay_optimizer):
# upstream scales layer id i's rate by layer_decay ** (depth + 1 - i) and applies it only below
# 1 (run_class_finetuning.py), so (0, 1], 1 being none (above 1, rates would grow toward the
# input); AdamW's weight decay is a rate, 0 (none) or more.
FINETUNE_BOUNDS: Dict[str, dict] = {
    "layer_decay": dict(min=0, max=1, min_open=True),
    "weight_decay": dict(min=0),
    "clip_grad": dict(min=0, min_open=True),  # a norm: 0 would zero every gradient
}


@dataclass(frozen=True)
class Sampling:
    """Upstream's test-time views of a dataset (``kinetics.py`` / ``ssv2.py``, mode test).

    ``dense``: every ``rate``-th frame of the whole video, ``clips`` clips along it;
    ``segment``: two interleaved samplings of evenly spaced frames (SSv2). ``crops`` spatial
    crops along the long side of each clip.
    """

    sampler: str
    clips: int
    crops: int
    rate: int = 4  # the dense sampler's --sampling_rate

    @property
    def views(self) -> str:
        """``"5x3"``: clips x crops."""
        return f"{self.clips}x{self.crops}"

    def describe(self, num_frames: int) -> str:
        """The views in words (a model card's): ``5 clips of 16 frames, every 4th frame, x 3
        crops``."""
        if self.sampler == "dense":
            nth = {1: "every frame", 2: "every 2nd frame", 3: "every 3rd frame"}.get(
                self.rate, f"every {self.rate}th frame")
            return f"{self.clips} clips of {num_frames} frames, {nth}, x {self.crops} crops"
        return (f"{self.clips} interleaved samplings of {num_frames} evenly spaced frames x "
                f"{self.crops} crops")


@dataclass(frozen=True)
class Dataset:
    """One dataset: its spellings, classes, test protocol and normalisation."""

    key: str          # the CLI spelling
    tag: str          # the spelling in asset names
    title: str
    num_classes: int  # 0: a pre-training source without labels
    class_file: Optional[str]  # tf_models/video/labels/<file>: names in upstream's index order
    test: Sampling
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    aliases: Tuple[str, ...] = ()  # other names seen in checkpoint file names
    # upstream's training flips clips horizontally, except on SSv2, whose labels name
    # directions ("from left to right"); training samples frames as ``test`` does
    train_flip: bool = True

    def spellings(self) -> Tuple[str, ...]:
        """Lower-case words that name this dataset in a file name."""
        return (self.key, self.tag.lower()) + self.aliases

    @property
    def labelled(self) -> bool:
        """Whether the dataset has classes (a pre-training-only source has none)."""
        return self.num_classes > 0


# Class-name sources and how each order was confirmed: docs/VIDEO.md ("Class names").
# Test protocols: 5 clips x 3 crops at sampling rate 4 (kinetics.py, also used for UCF101,
# K600 and K710), 2 interleaved clips x 3 crops (ssv2.py); HMDB51 at sampling rate 2 (V2's
# scripts/finetune/vit_g_k710_it_hmdb51_ft.sh). UnlabeledHybrid is V2's pre-training source
# (no labels; sampled every 4th frame, every 2nd for its SSv2 part: V2 docs/MODEL_ZOO.md).
DATASETS: Dict[str, Dataset] = {d.key: d for d in (
    Dataset("k400", "K400", "Kinetics-400", 400, "k400.txt", Sampling("dense", 5, 3),
            aliases=("kinetics",)),
    Dataset("ssv2", "SSv2", "Something-Something V2", 174, "ssv2.txt",
            Sampling("segment", 2, 3), train_flip=False),
    Dataset("ucf101", "UCF", "UCF101", 101, "ucf101.txt", Sampling("dense", 5, 3)),
    Dataset("k600", "K600", "Kinetics-600", 600, "k600.txt", Sampling("dense", 5, 3)),
    Dataset("k710", "K710", "Kinetics-710", 710, "k710.txt", Sampling("dense", 5, 3)),
    Dataset("hmdb51", "HMDB51", "HMDB51", 51, "hmdb51.txt", Sampling("dense", 5, 3, rate=2)),
    Dataset("hybrid", "Hybrid", "UnlabeledHybrid", 0, None, Sampling("dense", 5, 3)),
)}
# Head maps: a classifier for the target dataset from a source dataset's head, rows taken in
# the order of upstream's label file (V2 misc/label_710to{400,600}.json, as
# run_class_finetuning.py does); (source, target) -> tf_models/video/labels/<file>.
HEAD_MAPS: Dict[Tuple[str, str], str] = {
    ("k710", "k400"): "k710_to_k400.json",
    ("k710", "k600"): "k710_to_k600.json",
}
# What a checkpoint holds: FT a classifier, PT a masked autoencoder (``--mode``).
MODES = ("FT", "PT")


@dataclass(frozen=True)
class Recipe:
    """How an entry's model was trained: the tag that ends its name and the kind of
    checkpoint it leaves (``mode``). A distilled model is a classifier like a fine-tuned one."""

    tag: str
    mode: str
    title: str


RECIPES: Dict[str, Recipe] = {r.tag: r for r in (
    Recipe("PT", "PT", "pre-trained"),
    Recipe("FT", "FT", "fine-tuned"),
    Recipe("DL", "FT", "distilled"),
)}


@dataclass(frozen=True)
class Release:
    """One upstream run: a pre-training (its epochs and tube-mask ratio; None where upstream
    does not say) and the models it released (``recipes``: PT, FT, DL), with the classifier's
    reported accuracy (None where upstream publishes none).

    ``stage``: the dataset of an intermediate fine-tuning the model went through first (V2's
    "post-pre-train" on K710); ``head_from``: the classifier is another entry's, its head's
    rows taken through ``HEAD_MAPS[(head_from, dataset)]`` (upstream reports these
    accuracies for the K710 models on K400 / K600); ``decoder_mask_ratio``: V2's running-cell
    decoder masking in pre-training; ``test``: the entry's own test sampling when it is not its
    dataset's.
    """

    family: str
    size: str
    dataset: str
    pt_epochs: Optional[int]
    mask_ratio: Optional[float]
    top1: Optional[float]
    top5: Optional[float]
    recipes: Tuple[str, ...] = ("PT", "FT")
    stage: Optional[str] = None
    head_from: Optional[str] = None
    decoder_mask_ratio: Optional[float] = None
    test: Optional[Sampling] = None


# Upstream MODEL_ZOO.md (V1): pre-training epochs and accuracies; mask ratios from its scripts.
# V2 docs/MODEL_ZOO.md: ViT-g pre-trained 1200 epochs on UnlabeledHybrid (tube mask 0.9,
# running-cell decoder mask 0.5), then fine-tuned (16x5x3 views; SSv2 16x2x3); ViT-S / ViT-B
# distilled from the ViT-g K710 model with a K710 head, top-1 only (their pre-training is not
# stated: None), reported on K710 and, through the head maps, on K400 and K600.
RELEASES: Tuple[Release, ...] = (
    Release("v1", "S", "k400", 1600, 0.9, 79.0, 93.8),
    Release("v1", "B", "k400", 1600, 0.9, 81.5, 95.1),
    Release("v1", "L", "k400", 1600, 0.9, 85.2, 96.8),
    Release("v1", "H", "k400", 1600, 0.9, 86.6, 97.1),
    Release("v1", "S", "ssv2", 2400, 0.9, 66.8, 90.3),
    Release("v1", "B", "ssv2", 2400, 0.9, 70.8, 92.4),
    Release("v1", "B", "ucf101", 3200, 0.75, 91.3, 98.5),
    Release("v2", "g", "hybrid", 1200, 0.9, None, None, ("PT",), decoder_mask_ratio=0.5),
    Release("v2", "g", "k710", 1200, 0.9, 83.8, 96.4, ("FT",)),
    Release("v2", "g", "k400", 1200, 0.9, 87.2, 97.4, ("FT",)),
    Release("v2", "g", "k400", 1200, 0.9, 88.4, 98.0, ("FT",), stage="k710"),
    Release("v2", "g", "k600", 1200, 0.9, 88.8, 98.2, ("FT",), stage="k710"),
    Release("v2", "g", "ssv2", 1200, 0.9, 77.0, 95.9, ("FT",)),
    Release("v2", "g", "ucf101", 1200, 0.9, 99.6, 100.0, ("FT",), stage="k710"),
    Release("v2", "g", "hmdb51", 1200, 0.9, 88.1, 98.5, ("FT",), stage="k710"),
    Release("v2", "S", "k710", None, None, 77.6, None, ("DL",)),
    Release("v2", "S", "k400", None, None, 83.7, None, ("DL",), head_from="k710"),
    Release("v2", "S", "k600", None, None, 83.1, None, ("DL",), head_from="k710"),
    Release("v2", "B", "k710", None, None, 81.5, None, ("DL",)),
    Release("v2", "B", "k400", None, None, 86.6, None, ("DL",), head_from="k710"),
    Release("v2", "B", "k600", None, None, 85.9, None, ("DL",), head_from="k710"),
)

# Where the published release lives; ``VIDEOMAE_ZOO_URL`` overrides it (a mirror, a local
# folder served over HTTP, or a file:// URL).
RELEASE_VERSION = "v0.1.0"
DEFAULT_ZOO_URL = ("https://github.com/videomae-convert/videomae-convert/releases/download/"
                   + RELEASE_VERSION)


def recipe_tag(dataset: str, stage: Optional[str] = None,
               head_from: Optional[str] = None) -> str:
    """The dataset part of a name: ``K400``; ``K710-K400`` after a K710 fine-tuning stage;
    ``K710toK400`` for a K710 head mapped to K400's classes."""
    tag = DATASETS[dataset].tag
    if stage is not None:
        return f"{DATASETS[stage].tag}-{tag}"
    if head_from is not None:
        return f"{DATASETS[head_from].tag}to{tag}"
    return tag


def preset_name(size: str, dataset: str, recipe: str, num_frames: int = 16,
                img_size: int = 224, family: str = "v1", stage: Optional[str] = None,
                head_from: Optional[str] = None) -> str:
    """The published name, ``{prefix}_{size}_{datasets}_{frames}x{size}_{recipe}``
    (``TFVideoMAE_B_K400_16x224_FT``, ``TFVideoMAEv2_g_K710-K400_16x224_FT``,
    ``TFVideoMAEv2_B_K710toK400_16x224_DL``)."""
    return (f"{FAMILIES[family]['prefix']}_{size}_{recipe_tag(dataset, stage, head_from)}_"
            f"{num_frames}x{img_size}_{recipe}")


def _alternatives(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


_PREFIXES = _alternatives(f["prefix"] for f in FAMILIES.values())
_TAGS = _alternatives(d.tag for d in DATASETS.values())
# {prefix}_{size}_{[stage-|source-to]tag}_{frames}x{size}_{recipe}, capturing the dataset's
# tag and the recipe
_NAME_PATTERN = re.compile(
    _PREFIXES + r"_[A-Za-z]+_(?:" + _TAGS + r"(?:-|to))?(" + _TAGS + r")_\d+x\d+_("
    + "|".join(RECIPES) + ")")


def is_zoo_name(text: str) -> bool:
    """Whether ``text`` is spelled like a zoo name (``TFVideoMAE_...``), known or not."""
    return re.fullmatch(_PREFIXES + r"_[\w-]+", text or "") is not None


def dataset_from_name(name: str, mode: Optional[str] = None) -> Optional[str]:
    """The dataset key of a name that contains a published name (``"k400"`` for
    ``weights/TFVideoMAE_S_K400_16x224_FT.keras``; the head's dataset, ``"k400"``, for
    ``TFVideoMAEv2_B_K710toK400_16x224_DL``), only of ``mode`` (FT: a classifier; PT) when
    given; else None."""
    for match in _NAME_PATTERN.finditer(name or ""):
        if mode is None or RECIPES[match.group(2)].mode == mode:
            return next(d.key for d in DATASETS.values() if d.tag == match.group(1))
    return None


@dataclass(frozen=True)
class Preset:
    """One zoo entry as a Keras user sees it: what builds the model and what inference needs.

    ``mode`` is what the checkpoint holds (FT: a classifier, PT: a masked autoencoder);
    ``recipe`` how it was trained, the tag its name ends with (PT, FT, DL: distilled).
    ``dataset`` is the dataset of the model's head (of its pre-training for PT);
    ``stage`` / ``head_from`` / ``decoder_mask_ratio`` / ``sampling``: see ``Release``.
    """

    name: str
    family: str
    size: str
    mode: str
    dataset: str
    mask_ratio: Optional[float]
    pt_epochs: Optional[int]
    top1: Optional[float] = None
    top5: Optional[float] = None
    num_frames: int = 16
    img_size: int = 224
    tubelet_size: int = 2
    test_only: bool = False
    recipe: str = ""
    stage: Optional[str] = None
    head_from: Optional[str] = None
    decoder_mask_ratio: Optional[float] = None
    sampling: Optional[Sampling] = None

    @property
    def test(self) -> Sampling:
        """Upstream's test sampling for this entry: its own, else its dataset's."""
        return self.sampling or self.facts.test

    @property
    def head_map(self) -> Optional[str]:
        """The label-map file (``tf_models/video/labels/``) whose rows of the ``head_from``
        dataset's head make this entry's head, or None."""
        return HEAD_MAPS[(self.head_from, self.dataset)] if self.head_from else None

    @property
    def description(self) -> str:
        """One sentence on what the model is and how it was trained."""
        size = ALL_SIZES[self.size].title
        text = f"{FAMILIES[self.family]['title']} {size}, {RECIPES[self.recipe].title}"
        if self.mode == "PT":
            text += f" on {self.facts.title}"
            if self.pt_epochs:
                text += f" ({self.pt_epochs} epochs, tube mask {self.mask_ratio}"
                if self.decoder_mask_ratio:
                    text += f", running-cell decoder mask {self.decoder_mask_ratio}"
                text += ")"
            return text + "."
        if self.recipe == "DL":
            text += " from the ViT-g Kinetics-710 model"
        if self.stage:
            text += f" on {DATASETS[self.stage].title}, then"
        if self.head_from:
            return (text + f" with a {DATASETS[self.head_from].title} head; the "
                    f"{self.facts.title} classes are that head's rows through upstream's "
                    f"label map ({self.head_map}).")
        return text + f" on {self.facts.title}."

    @property
    def facts(self) -> Dataset:
        """The dataset's row."""
        return DATASETS[self.dataset]

    @property
    def dims(self) -> Dict[str, int]:
        """Encoder and decoder shapes of the size."""
        return ALL_SIZES[self.size].dims

    @property
    def patch_size(self) -> int:
        return ALL_SIZES[self.size].patch_size

    @property
    def mlp_ratio(self) -> float:
        return ALL_SIZES[self.size].mlp_ratio

    @property
    def num_classes(self) -> int:
        return self.facts.num_classes

    @property
    def mean(self) -> Tuple[float, float, float]:
        return self.facts.mean

    @property
    def std(self) -> Tuple[float, float, float]:
        return self.facts.std

    @property
    def protocol(self) -> str:
        """Upstream's test views, temporal x spatial: ``"5x3"`` or ``"2x3"``."""
        return self.test.views

    @property
    def eval_views(self) -> str:
        """Upstream's test views with the frames per view: ``"16x5x3"``."""
        return f"{self.num_frames}x{self.protocol}"

    @property
    def num_patches(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.img_size // self.patch_size) ** 2

    @property
    def pixels_per_patch(self) -> int:
        """What the pre-trained decoder predicts per masked patch (RGB x tubelet x patch)."""
        return 3 * self.tubelet_size * self.patch_size ** 2

    def backbone_config(self) -> dict:
        """Keyword arguments of ``VideoMAEBackbone`` (and the shared part of every model)."""
        dims = self.dims
        return dict(embed_dim=dims["embed_dim"], depth=dims["depth"],
                    num_heads=dims["num_heads"], num_frames=self.num_frames,
                    img_size=self.img_size, patch_size=self.patch_size,
                    tubelet_size=self.tubelet_size, mlp_ratio=self.mlp_ratio)

    def model_config(self) -> dict:
        """Plain keyword arguments that build this entry's model on either side."""
        config = self.backbone_config()
        if self.mode == "FT":
            config["num_classes"] = self.num_classes
        else:
            dims = self.dims
            config.update(decoder_embed_dim=dims["decoder_embed_dim"],
                          decoder_depth=dims["decoder_depth"],
                          decoder_num_heads=dims["decoder_num_heads"])
        return config

    def class_names(self) -> Optional[List[str]]:
        """The dataset's class names in index order, where the package ships them."""
        try:
            from .video.labels import class_names
        except ImportError:
            return None
        return list(class_names(self.dataset))


    def listing(self) -> dict:
        """The entry as ``videomae-convert --list --json`` prints it: ``mode`` what the
        checkpoint holds (FT: a classifier, PT), ``recipe`` the name's tag (PT, FT, DL); class
        count, accuracy and views are a classifier's (None for PT, and where upstream
        publishes none)."""
        classifier = self.mode == "FT"
        return dict(name=self.name, family=self.family, size=self.size,
                    dataset=self.dataset, mode=self.mode, recipe=self.recipe,
                    stage=self.stage, head_from=self.head_from,
                    num_classes=self.num_classes if classifier else None,
                    top1=self.top1 if classifier else None,
                    top5=self.top5 if classifier else None,
                    views=self.eval_views if classifier else None,
                    sampling_rate=self.test.rate, pt_epochs=self.pt_epochs,
                    mask_ratio=self.mask_ratio, test_only=self.test_only)


def _presets(release: Release, size: str, **overrides) -> List[Preset]:
    frames = overrides.get("num_frames", 16)
    img = overrides.get("img_size", 224)
    return [Preset(name=preset_name(size, release.dataset, recipe, frames, img, release.family,
                                    release.stage, release.head_from),
                   family=release.family, size=size, mode=RECIPES[recipe].mode,
                   dataset=release.dataset, mask_ratio=release.mask_ratio,
                   pt_epochs=release.pt_epochs, recipe=recipe, stage=release.stage,
                   head_from=release.head_from, decoder_mask_ratio=release.decoder_mask_ratio,
                   sampling=release.test, **overrides)
            for recipe in release.recipes]


PRESETS: Dict[str, Preset] = {
    p.name: p for release in RELEASES
    for p in _presets(release, release.size, top1=release.top1, top5=release.top5)}


def _tiny_releases() -> List[Tuple[str, Release]]:
    """(tiny size, release) of the test presets: V1 one per dataset, its first run; V2 one per
    shape of entry (pre-trained, fine-tuned directly or after a stage, distilled, mapped) and
    per test sampling (SSv2's segments, HMDB51's rate 2), which the video tools follow."""
    chosen: Dict[tuple, Tuple[str, Release]] = {}
    for release in RELEASES:
        if release.family == "v1":
            key = ("v1", release.dataset)
            size = "T"
        else:
            key = ("v2", release.recipes, release.stage is None, release.head_from is None,
                   release.test or DATASETS[release.dataset].test)
            size = "Tg"
        chosen.setdefault(key, (size, release))
    return list(chosen.values())


# Tiny test-only presets: 4 frames of 32x32 (patch 16) or 28x28 (patch 14) -> 2 x 2 x 2 = 8
# tokens, e.g. TFVideoMAE_T_K400_4x32_FT, TFVideoMAEv2_Tg_K710toK400_4x28_DL,
# TFVideoMAEv2_Tg_K710-HMDB51_4x28_FT.
TEST_PRESETS: Dict[str, Preset] = {
    p.name: p for size, release in _tiny_releases()
    for p in _presets(release, size, num_frames=4, img_size=2 * ALL_SIZES[size].patch_size,
                      test_only=True)}


def get_preset(name: str) -> Preset:
    """A preset by its published name (test presets included); KeyError names the choices."""
    if name in PRESETS:
        return PRESETS[name]
    if name in TEST_PRESETS:
        return TEST_PRESETS[name]
    raise KeyError(f"unknown zoo preset {name!r}; known: {', '.join(sorted(PRESETS))}")
