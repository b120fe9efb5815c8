"""Run in a fresh process on one Keras backend: load zoo presets the way a user does, run them,
fine-tune one step, and save what happened for the calling test to check.

    KERAS_BACKEND=jax python tests/backend_check.py '{"ft": ..., "pt": ..., ...}'

(On TensorFlow the fast tier calls ``main`` in the test's own process: test_presets.)

Arguments (JSON): ft / pt preset names, keras_ft (a .keras path), clip / mask (.npy paths),
video (a real video file), out (a folder). Writes NAME.npy outputs and result.json (what one
fine-tuning step moved, in float32 and, on TensorFlow, in mixed_bfloat16; what one
pre-training step moved and its loss against a seeded target, saved as pt_target.npy
(evaluate's also with per-clip weights), and the token counts its steps were compiled for;
its predict on other token counts; the video tools' outputs and one real video's prediction;
how far Keras's ``model.export`` SavedModel (not on PyTorch) is from the classifier; the
error ``fit`` gives for a label outside the classes; torch modules imported).
"""

import json
import os
import sys

import numpy as np


#: per-clip sample weights of the pre-trainer's weighted evaluate
PT_CLIP_WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0], np.float32)


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
    result["counts"] = other_counts(keras, tf_models, pretrainer, clip, mask, out)
    result["pretrain"] = pretrain(keras, pretrainer, clip, mask, out)
    backbone = tf_models.VideoMAEBackbone.from_preset(args["pt"], progress=False)
    np.save(os.path.join(out, "pt_tokens.npy"),
            keras.ops.convert_to_numpy(backbone(clip)["tokens"]))

    result["video"] = video_tools(args, clip, out)
    if result["backend"] != "torch":  # Keras's torch export fails for any model (its
        # dynamic_shapes for the input tuple): not ours to fix
        result["export"] = export_saved_model(keras, classifier, clip, out)
    result.update(fine_tune(keras, tf_models, args, clip))
    result["bad_labels"] = bad_labels(classifier, clip)
    if result["backend"] == "tensorflow":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            result["bf16"] = fine_tune(keras, tf_models, args, clip)
        finally:  # run in a test's own process too (test_presets' TensorFlow case)
            keras.mixed_precision.set_global_policy("float32")
    if result["backend"] == "jax" and len(keras.distribution.list_devices()) > 1:
        result["pretrain_data_parallel"] = pretrain_data_parallel(keras, tf_models, args,
                                                                  clip, mask, out)
    result["torch_modules"] = sorted(m for m in sys.modules
                                     if m.split(".")[0] in ("torch", "torchvision", "timm"))
    with open(os.path.join(out, "result.json"), "w") as handle:
        json.dump(result, handle)


def video_tools(args, clip, out):
    """The video tools' model loading on this backend (``videomae-predict`` / ``evaluate`` /
    ``extract``): the classifier's logits on the clips and on a batch of three (padded on JAX),
    its pooled features, and one real video classified under upstream's protocol."""
    from tf_models.video.features import load_feature_model
    from tf_models.video.model import load_video_model
    from tf_models.video.predict import classify_video

    model = load_video_model(args["keras_ft"])
    np.save(os.path.join(out, "video_logits.npy"), model.run(clip))
    np.save(os.path.join(out, "video_logits_3.npy"), model.run(np.concatenate([clip, clip[:1]])))
    features = load_feature_model(args["keras_ft"])
    np.save(os.path.join(out, "video_pooled.npy"), features.run(clip))
    return classify_video(model, args["video"], k=3)


def export_saved_model(keras, classifier, clip, out):
    """Keras's own ``model.export`` of the classifier (on JAX through jax2tf, its batch a
    symbolic dimension), reloaded by TensorFlow and run on the clips and a batch of three:
    the error, or how far its logits are from the model's."""
    import tensorflow as tf

    folder = os.path.join(out, "exported")
    try:
        classifier.export(folder, format="tf_saved_model", verbose=False)
    except Exception as error:  # the calling test shows what failed
        return {"error": f"{type(error).__name__}: {error}"[:500]}
    loaded = tf.saved_model.load(folder)  # held: its variables go with it
    three = np.concatenate([clip, clip[:1]])
    return {"max_difference": max(
        float(np.max(np.abs(np.asarray(loaded.serve(x))
                            - keras.ops.convert_to_numpy(classifier(x)))))
        for x in (clip, three))}


def bad_labels(classifier, clip):
    """What ``fit`` on a label outside the classifier's classes gives (on JAX, before the
    check, nothing: a clamped index, trained on): the error, or None."""
    try:
        classifier.fit(clip, np.array([0, classifier.num_classes]), verbose=0)
    except Exception as error:  # the calling test checks which
        return f"{type(error).__name__}: {error}"[:500]
    return None


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


def other_counts(keras, tf_models, pretrainer, clip, mask, out):
    """The pre-trainer's ``predict`` on another mask ratio and with a decode mask, saved beside
    its direct calls (on JAX: ``predict`` compiled per token count, a call eager); on JAX also
    what a ``jax.jit`` of one's own raises without ``static_token_counts``, and its output
    with them."""
    rng = np.random.default_rng(6)
    fewer = tf_models.tube_mask(clip.shape[1], clip.shape[2], 16, 2, 0.25, len(clip), rng)
    decode = np.ones_like(mask)
    for row in decode:  # three decoded tokens per row, anywhere
        row[rng.permutation(len(row))[:3]] = False
    cases = {"fewer": {"video": clip, "mask": fewer},
             "decode": {"video": clip, "mask": mask, "decode_mask": decode}}
    result = {}
    for name, inputs in cases.items():
        np.save(os.path.join(out, f"counts_{name}_predict.npy"),
                pretrainer.predict(inputs, verbose=0))
        np.save(os.path.join(out, f"counts_{name}_call.npy"),
                keras.ops.convert_to_numpy(pretrainer(inputs)))
        result[name] = list(tf_models.token_counts(inputs["mask"], inputs.get("decode_mask")))
    if keras.backend.backend() == "jax":
        import jax

        state = [v.value for v in pretrainer.trainable_variables]
        rest = [v.value for v in pretrainer.non_trainable_variables]

        def run(trainable, video, mask_):
            return pretrainer.stateless_call(trainable, rest, {"video": video, "mask": mask_})[0]

        try:
            jax.jit(run)(state, clip, mask)
        except ValueError as error:
            result["jit_error"] = str(error)
        with tf_models.static_token_counts(*tf_models.token_counts(mask)):
            jitted = jax.jit(run)(state, clip, mask)
        np.save(os.path.join(out, "counts_jit.npy"), np.asarray(jitted))
    return result


def pretrain(keras, pretrainer, clip, mask, out):
    """The pre-trainer's loss before a step (``evaluate``), then one ``fit`` step on the mean
    squared error to a seeded target (the same count of masked tokens in every row, as
    upstream trains): its loss, what moved, and on JAX the token counts each step kind was
    compiled for."""
    target = np.random.default_rng(5).standard_normal(
        (len(clip), int(mask[0].sum()), pretrainer.core.num_outputs)).astype(np.float32)
    np.save(os.path.join(out, "pt_target.npy"), target)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    evaluated = pretrainer.evaluate({"video": clip, "mask": mask}, target, verbose=0)
    weighted = pretrainer.evaluate({"video": clip, "mask": mask}, target, verbose=0,
                                   sample_weight=PT_CLIP_WEIGHTS[:len(clip)])
    before = {v.path: keras.ops.convert_to_numpy(v).copy()
              for v in pretrainer.trainable_variables}
    history = pretrainer.fit({"video": clip, "mask": mask}, target, batch_size=len(clip),
                             epochs=1, verbose=0)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in pretrainer.trainable_variables}
    np.savez(os.path.join(out, "pt_after_step.npz"), **after)
    return {"trainable": len(before), "loss": float(history.history["loss"][0]),
            "evaluate_loss": float(evaluated), "weighted_evaluate_loss": float(weighted),
            "moved": sorted(p for p in before if not np.array_equal(before[p], after[p])),
            "jitted": {kind: [list(c) for c in counts]
                       for kind, counts in pretrainer.jitted_token_counts.items()}}


def pretrain_data_parallel(keras, tf_models, args, clip, mask, out):
    """``pretrain``'s step again on every device (Keras's ``DataParallel``; the JAX test
    starts this child with two CPU devices): the devices its weights sit on, its loss, and
    how far its weights land from the one-device step's."""
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    try:
        pretrainer = tf_models.VideoMAEMaskedAutoencoder.from_preset(args["pt"], progress=False)
        pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        target = np.load(os.path.join(out, "pt_target.npy"))
        history = pretrainer.fit({"video": clip, "mask": mask}, target, batch_size=len(clip),
                                 epochs=1, verbose=0)
        single = np.load(os.path.join(out, "pt_after_step.npz"))
        return {"devices": len(pretrainer.trainable_variables[0].value.sharding.device_set),
                "loss": float(history.history["loss"][0]),
                "jitted": [list(c) for c in pretrainer.jitted_token_counts["train"]],
                "max_weight_difference": max(
                    float(np.max(np.abs(keras.ops.convert_to_numpy(v) - single[v.path])))
                    for v in pretrainer.trainable_variables)}
    finally:
        keras.distribution.set_distribution(None)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
