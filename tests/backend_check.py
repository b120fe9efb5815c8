"""Run in a fresh process on one Keras backend: load zoo presets the way a user does, run them,
fine-tune one step, and save what happened for the calling test to check.

    KERAS_BACKEND=jax python tests/backend_check.py '{"ft": ..., "pt": ..., ...}'

(On TensorFlow the fast tier calls ``main`` in the test's own process: test_presets.)

Arguments (JSON): ft / pt preset names, keras_ft (a .keras path), clip / mask (.npy paths),
out (a folder). Writes NAME.npy outputs and result.json (what one fine-tuning step moved, in
float32 and, on TensorFlow, in mixed_bfloat16; what one pre-training step moved and its loss
against a seeded target, saved as pt_target.npy; torch modules imported).
"""

import json
import os
import sys

import numpy as np


def main(args):
    import keras

    import tf_models

    out = args["out"]
    clip = np.load(args["clip"])
    mask = np.load(args["mask"])
    result = {"backend": keras.backend.backend()}

    classifier = tf_models.VideoMAEVideoClassifier.from_preset(args["ft"], progress=False)
    np.save(os.path.join(out, "ft.npy"), keras.ops.convert_to_numpy(classifier(clip)))
    loaded = keras.saving.load_model(args["keras_ft"], compile=False)
    np.save(os.path.join(out, "keras_ft.npy"),
            keras.ops.convert_to_numpy(loaded({"video": clip})))
    pretrainer = tf_models.VideoMAEMaskedAutoencoder.from_preset(args["pt"], progress=False)
    np.save(os.path.join(out, "pt.npy"),
            keras.ops.convert_to_numpy(pretrainer({"video": clip, "mask": mask})))
    np.save(os.path.join(out, "pt_predict.npy"),
            pretrainer.predict({"video": clip, "mask": mask}, verbose=0))
    result["pretrain"] = pretrain(keras, pretrainer, clip, mask, out)
    backbone = tf_models.VideoMAEBackbone.from_preset(args["pt"], progress=False)
    np.save(os.path.join(out, "pt_tokens.npy"),
            keras.ops.convert_to_numpy(backbone(clip)["tokens"]))

    result.update(fine_tune(keras, tf_models, args, clip))
    if result["backend"] == "tensorflow":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            result["bf16"] = fine_tune(keras, tf_models, args, clip)
        finally:  # run in a test's own process too (test_presets' TensorFlow case)
            keras.mixed_precision.set_global_policy("float32")
    result["torch_modules"] = sorted(m for m in sys.modules
                                     if m.split(".")[0] in ("torch", "torchvision", "timm"))
    with open(os.path.join(out, "result.json"), "w") as handle:
        json.dump(result, handle)


def fine_tune(keras, tf_models, args, clip):
    """One training step of a classifier built from the PT preset: what moved."""
    result = {}
    # fine-tuning a pre-trained entry: new fc_norm and head, upstream's optimizer. Drop path
    # and dropout stay off here: with 2 clips they may zero a branch's every gradient, and
    # "every weight moves" must not depend on luck (tests/test_finetune.py covers them)
    keras.utils.set_random_seed(0)
    model = tf_models.VideoMAEVideoClassifier.from_preset(args["pt"], num_classes=7,
                                                     progress=False)
    model.compile(optimizer=tf_models.layer_decay_optimizer(model, learning_rate=1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {path: keras.ops.convert_to_numpy(v).copy()
              for path, v in ((v.path, v) for v in model.trainable_variables)}
    labels = np.arange(len(clip)) % 7
    history = model.fit(clip, labels, batch_size=len(clip), epochs=1, verbose=0)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    result["trainable"] = len(before)
    result["moved"] = sorted(p for p in before if not np.array_equal(before[p], after[p]))
    result["loss"] = float(history.history["loss"][0])
    result["head_shape"] = list(model.head.kernel.shape)
    result["compute_dtype"] = str(model.backbone.blocks[0].compute_dtype)
    return result


def pretrain(keras, pretrainer, clip, mask, out):
    """One ``fit`` step of the pre-trainer on the mean squared error to a seeded target (the
    same count of masked tokens in every row, as upstream trains): its loss and what moved."""
    target = np.random.default_rng(5).standard_normal(
        (len(clip), int(mask[0].sum()), pretrainer.core.num_outputs)).astype(np.float32)
    np.save(os.path.join(out, "pt_target.npy"), target)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    before = {v.path: keras.ops.convert_to_numpy(v).copy()
              for v in pretrainer.trainable_variables}
    history = pretrainer.fit({"video": clip, "mask": mask}, target, batch_size=len(clip),
                             epochs=1, verbose=0)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in pretrainer.trainable_variables}
    return {"trainable": len(before), "loss": float(history.history["loss"][0]),
            "moved": sorted(p for p in before if not np.array_equal(before[p], after[p]))}


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
