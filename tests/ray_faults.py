"""Faults on a Ray engine, run by tests/test_cluster.py in a process of its own (the Ray driver is never a pytest worker).

``python -m tests.ray_faults kill RETRIES FOLDER``: two tiny CNN runs on a
local Ray cluster, the first worker of seed 1 killed by its pid; prints each
run's status and the pids that ran it. ``python -m tests.ray_faults interrupt
FOLDER``: Ctrl-C (a KeyboardInterrupt in the driver) once both runs started;
prints whether their worker processes ended. ``python -m tests.ray_faults one_cpu
FOLDER``: both runs on a cluster of one CPU; prints where and when each ran.
``python -m tests.ray_faults join FOLDER``: joins a cluster ``ray start --head``
started with a token (Ray's token authentication); prints its CPUs. ``python -m tests.ray_faults
gpu_node FOLDER``: both runs on a cluster whose one GPU node has one CPU; prints whether they finished.
The last line printed is JSON.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import keras

from tests.conftest import make_tiny_data
from xrayutils import cluster, jobs, train
from xrayutils.protocol import TrainingProtocol

WAIT = 300  # seconds for a worker to start, or to end once cancelled


def tiny_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    """A two-layer CNN: these tests are of the engine, not the model, and it builds and traces in a second, not ResNet34's half minute.

    Defined in ``__main__`` (this file runs as ``python -m tests.ray_faults``), so
    cloudpickle carries it to Ray's workers by value, as it carries a page's own builder.
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="predictions")(x))


def tiny_runs(folder: Path, epochs: int = 20) -> tuple[list[jobs.Run], dict, list[str]]:
    """Two runs of :func:`tiny_cnn` (seeds 1 and 2, ``epochs`` short epochs: 20 take seconds) on tiny images, their frames and classes."""
    data = make_tiny_data(folder / "data")
    protocol = TrainingProtocol(study="coronahack", image_size=32, batch_size=4, num_epochs=epochs, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.25, seed=0, weights="none", augment=False)
    split, frames = train.load_split("coronahack", "two", protocol, data)
    build = functools.partial(tiny_cnn, protocol.input_shape)
    return [jobs.Run("tiny", build, protocol.for_seed(seed)) for seed in (1, 2)], frames, split.classes


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def when(condition, timeout: float = WAIT) -> bool:
    """Wait until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def kill(retries: int, folder: Path) -> dict:
    """Kill the first worker of seed 1 once it runs; every run's status and pids."""
    runs, frames, classes = tiny_runs(folder)
    engine = cluster.RayEngine(threads=1, retries=retries)
    victim = runs[0].label

    def killer() -> None:
        if when(lambda: engine.pids.get(victim)):
            os.kill(engine.pids[victim][0], signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    rows = {run.label: row for run, row in engine.run(runs, frames, classes=classes, provenance={"test": 1})}
    return {"rows": {label: {"ok": row.ok, "error": row.error} for label, row in rows.items()}, "pids": engine.pids}


def interrupt(folder: Path) -> dict:
    """Ctrl-C once both runs have started: whether it reached the chapter and their workers ended.

    The runs are long (1,000 epochs, minutes) so that neither can finish before the Ctrl-C, however loaded the
    machine: with 20 epochs, a test run beside the others sometimes saw both finish first.
    """
    runs, frames, classes = tiny_runs(folder, epochs=1000)
    engine = cluster.RayEngine(threads=1, retries=1)

    def ctrl_c() -> None:
        if when(lambda: all(engine.pids.get(run.label) for run in runs)):
            time.sleep(1)  # both are training
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    finished, interrupted = [], False
    try:
        finished = [run.label for run, _ in engine.run(runs, frames, classes=classes, provenance={"test": 1})]
    except KeyboardInterrupt:
        interrupted = True
    pids = [pid for label in engine.pids.values() for pid in label]
    ended = when(lambda: not any(alive(pid) for pid in pids), timeout=60)
    return {"interrupted": interrupted, "finished": finished, "pids": pids, "ended": ended,
            "alive": [pid for pid in pids if alive(pid)]}


def one_cpu(folder: Path) -> dict:
    """Both runs on a cluster of one CPU, one thread each: when each ran on its worker."""
    runs, frames, classes = tiny_runs(folder)
    ray = cluster.import_ray()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    rows = {run.label: row for run, row in cluster.RayEngine(threads=1).run(runs, frames, classes=classes, provenance={"test": 1})}
    return {label: row.history["worker"] for label, row in rows.items()}


def gpu_node(folder: Path) -> dict:
    """A head with 2 CPUs and no GPU, and a node with 1 CPU and 1 GPU (declared, so none needed): both runs must still start.

    Before, a run asked for the cluster's CPUs shared out (3) and a GPU, which no node has, and Ray waited forever.
    """
    from ray.cluster_utils import Cluster

    runs, frames, classes = tiny_runs(folder)
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False})
    nodes.add_node(num_cpus=1, num_gpus=1)
    cluster.import_ray().init(address=nodes.address, log_to_driver=False)
    engine = cluster.RayEngine()
    done = threading.Event()
    rows: dict = {}

    def train_all() -> None:
        rows.update({run.label: row.ok for run, row in engine.run(runs, frames, classes=classes, provenance={"test": 1})})
        done.set()

    threading.Thread(target=train_all, daemon=True).start()
    finished = done.wait(WAIT)
    try:
        return {"finished": finished, "rows": rows, "description": engine.description}
    finally:
        cluster.import_ray().shutdown()
        nodes.shutdown()


def join(folder: Path) -> dict:
    """Join a cluster that ``ray start --head`` started with a token, as the README says: its CPUs, or the error."""
    home, temp = folder / "home", Path(tempfile.mkdtemp(prefix="xr", dir="/tmp"))  # Ray's socket paths must stay short
    ray_cli = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
    os.environ.update(HOME=str(home), RAY_ADDRESS=f"127.0.0.1:{free_port()}")
    os.environ.pop("RAY_AUTH_MODE", None)
    subprocess.run([*ray_cli, "get-auth-token", "--generate"], check=True, capture_output=True)
    head = subprocess.Popen([*ray_cli, "start", "--head", "--port", os.environ["RAY_ADDRESS"].split(":")[1], "--num-cpus", "1",
                             "--ray-client-server-port", str(free_port()), "--include-dashboard", "false", "--temp-dir", str(temp),
                             "--block"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        cpus = error = None
        deadline = time.monotonic() + 90  # the head takes a few seconds to listen
        while time.monotonic() < deadline:
            try:
                cpus = cluster.capacity()[0]
                break
            except ConnectionError as failed:
                error = str(failed.__cause__ or failed)[-300:]
                cluster.import_ray().shutdown()
                time.sleep(2)
        return {"cpus": cpus, "error": error, "token": (home / ".ray" / "auth_token").is_file(),
                "auth_mode": os.environ.get("RAY_AUTH_MODE")}
    finally:
        cluster.import_ray().shutdown()
        head.terminate()
        head.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str]) -> None:
    scenario, *rest = argv
    if scenario == "kill":
        result = kill(int(rest[0]), Path(rest[1]))
    else:
        result = {"interrupt": interrupt, "one_cpu": one_cpu, "join": join, "gpu_node": gpu_node}[scenario](Path(rest[0]))
    cluster.import_ray().shutdown()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
