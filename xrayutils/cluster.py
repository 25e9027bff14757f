"""A chapter's training runs as Ray tasks, side by side on one machine or on a cluster, with the numbers of one machine.

Chapters 01-03 train every model once per training seed; the runs share only the
data and the protocol. :func:`engine` turns the chapters' ``engine`` parameter into
what :func:`xrayutils.jobs.train_models` executes its runs with: the
:class:`~xrayutils.jobs.LocalEngine` (one after another in the kernel, the default),
or a :class:`RayEngine`, which submits every run as a `Ray <https://docs.ray.io>`_
task asking for ``threads`` CPUs (and a GPU where the cluster has them) and gathers
them as they finish. Ray is an optional extra (``pip install "xrayutils[cluster]"``):
nothing here imports it until a Ray engine is asked for.

- **Cluster.** ``RAY_ADDRESS`` names a running cluster (``ray start --head`` on one
  node, ``ray start --address HEAD:6379`` on the others; Ray's token sent where it
  may ask for one, :func:`token_auth`); without it a local one is started for the
  chapter's kernel, with every core.
- **Data.** Workers read the images from the paths the chapter's split holds: a
  cluster's nodes must see the data folder at the same path (a shared folder). Each
  run first checks that every image is there with the size the chapter saw, and a
  worker that does not see them fails at once, naming the folder. Shipping the
  decoded images instead would copy them once per run for nothing on one machine,
  and most labs' clusters share their storage.
- **Files.** A worker saves its model in a folder of its own and sends the file
  back; the chapter's kernel writes it (atomically, a different earlier model kept,
  :func:`xrayutils.jobs.place_model`) and every results file, as with the local engine.
- **Same numbers.** Every run is seeded and deterministic on the CPU, in a fresh
  worker process (``max_calls=1``: nothing left by an earlier run) with
  ``TF_NUM_INTRAOP_THREADS=threads``; its test probabilities equal those of the same
  run in the kernel with as many threads (``tests/test_cluster.py``). The thread count
  itself changes the last digits (measured, 1 against 2 threads, 2 epochs on tiny
  images: ResNet34's probabilities differ by up to 4e-4, EfficientNetV2S's by 8e-3),
  so each run records its ``threads``.
- **Faults.** A run whose worker dies is retried (``retries``, once by default) and then
  reported failed in its row while the others finish; Ctrl-C cancels every submitted
  run and its worker ends (both in ``tests/ray_faults.py``). Progress lines of runs on workers reach the runner's display
  (:func:`xrayutils.progress.relayed`), and what a run prints reaches the page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from xrayutils import constraints, devices, jobs, predict, progress

#: Tries to start or join the cluster: Ray gives its node 30 s, which a busy 2-core machine sometimes misses.
STARTS = 3
INSTALL = 'pip install "xrayutils[cluster]"  (or: pip install ray)'


class DataNotVisible(RuntimeError):
    """A worker does not see the images the chapter's split names (not there, or not the same files)."""


def engine(name: str, *, threads: int = 0, retries: int = 1) -> jobs.LocalEngine | RayEngine:
    """The engine the chapters' ``engine`` parameter names (``threads`` and ``retries`` as :class:`RayEngine`).

    ``local``: one run after another in the kernel; ``ray``: the runs side by
    side as Ray tasks; ``auto``: Ray with one run per GPU where this machine has
    several (or ``RAY_ADDRESS`` names a cluster), else local; ``mirrored``: local,
    each run's batches split over every GPU (:func:`xrayutils.devices.distribution`).
    ``auto`` without Ray installed stays local and says so.
    """
    constraints.check("engine", name)
    if name == "auto":
        if devices.gpu_count() < 2 and not os.environ.get("RAY_ADDRESS"):
            return jobs.LocalEngine()
        try:
            import_ray()
        except ImportError as error:
            print(f"engine auto: {error}; the runs go one after another in this kernel", flush=True)
            return jobs.LocalEngine()
        return RayEngine(threads=threads, retries=retries)
    if name == "ray":
        return RayEngine(threads=threads, retries=retries)
    return jobs.LocalEngine(mirrored=name == "mirrored")  # local, or mirrored


def token_auth(environ: dict[str, str], home: Path) -> bool:
    """Whether joining ``RAY_ADDRESS``'s cluster should send Ray's token (``RAY_AUTH_MODE=token``).

    Ray 2.59 and newer turn token authentication on for a cluster started where a
    token exists (``~/.ray/auth_token``, which a local ``ray.init()`` writes), but a
    process joining it does not send the token unless ``RAY_AUTH_MODE`` says
    ``token`` before Ray is imported: ``ray start --head`` then
    ``RAY_ADDRESS=... xray-book build --engine ray`` failed with "InvalidAuthToken".
    Sending it to a cluster without authentication does no harm (tried).  A mode
    the user set is kept, and there is nothing to send without a token.
    """
    token = environ.get("RAY_AUTH_TOKEN") or environ.get("RAY_AUTH_TOKEN_PATH") or (home / ".ray" / "auth_token").is_file()
    return bool(environ.get("RAY_ADDRESS")) and "RAY_AUTH_MODE" not in environ and bool(token)


def import_ray():
    """Ray, or an error that says how to install it; set to send its token to a cluster that may ask for it (:func:`token_auth`)."""
    if "ray" not in sys.modules and token_auth(dict(os.environ), Path.home()):
        os.environ["RAY_AUTH_MODE"] = "token"  # read when Ray is imported
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"engine 'ray' needs Ray, which is not installed here: {INSTALL}") from error
    return ray


def connect() -> float:
    """Join ``RAY_ADDRESS``'s cluster, or start a local one with every core; the seconds it took (0 when already connected).

    Ray's own log lines and its workers' output stay off the page: a run's
    output comes back with its result (:func:`execute`).
    """
    ray = import_ray()
    if ray.is_initialized():
        return 0.0
    started = time.perf_counter()
    for attempt in range(1, STARTS + 1):
        try:
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
            break
        except Exception as error:  # Ray waits 30 s for its raylet, which a machine busy with other work can miss
            ray.shutdown()
            if attempt == STARTS or "timed out during startup" not in str(error):
                raise
    return time.perf_counter() - started


def capacity() -> tuple[int, int]:
    """The CPUs and GPUs of the cluster (joined or started first)."""
    connect()
    total = import_ray().cluster_resources()
    return int(total.get("CPU", 1)), int(total.get("GPU", 0))


def cpus_per_gpu() -> int | None:
    """The fewest CPUs per GPU on the cluster's live GPU nodes (``None`` without GPUs): what one GPU's run can count on."""
    nodes = [node["Resources"] for node in import_ray().nodes() if node.get("Alive") and node["Resources"].get("GPU")]
    return min(int(node.get("CPU", 0) // node["GPU"]) for node in nodes) if nodes else None


def workers() -> int:
    """How many runs the cluster takes side by side at most: its GPUs, else its CPUs (one thread each)."""
    cpus, gpus = capacity()
    return gpus or cpus


def data_files(frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Every image the split names, with its size in bytes, as the chapter's kernel sees it."""
    return {path: os.path.getsize(path) for frame in frames.values() for path in frame["path"]}


def check_visible(files: dict[str, int]) -> None:
    """Raise :class:`DataNotVisible`, naming the folder, unless every file is here with the same size."""
    missing = [path for path in files if not os.path.isfile(path)]
    changed = [path for path, size in files.items() if path not in missing and os.path.getsize(path) != size]
    if missing or changed:
        folder = os.path.commonpath(list(files)) if files else "?"
        what = "; ".join(f"{len(paths)} of {len(files)} images {how} (first: {paths[0]})"
                         for paths, how in ((missing, "missing"), (changed, "of another size")) if paths)
        raise DataNotVisible(f"this worker ({socket.gethostname()}) does not see the chapter's data in {folder}: {what}. "
                             "Every Ray worker reads the images from the same path: put the data in a folder all nodes share.")


def execute(run: jobs.Run, frames: dict[str, pd.DataFrame], files: dict[str, int], classes: list[str],
            provenance: dict[str, Any], relay: Any) -> tuple[jobs.ModelRun, bytes | None, str]:
    """One run on a worker: check the data, :func:`~xrayutils.jobs.train_and_test`, and send back its result, model file and output.

    ``relay`` (a Ray queue) carries ``(label, pid, line)`` progress lines to the
    chapter's kernel; the first, sent before anything else, names the worker's pid.
    A line is sent without waiting for the queue's answer: a task waiting on
    another's result (``Queue.put_nowait`` does, through ``ray.get``) gives its
    CPUs back to Ray meanwhile, which then started a further run beside it (3 runs
    on 2 CPUs).  The run's history records where and when it ran (``worker``).
    """
    def send(line: str) -> None:
        relay.actor.put_nowait.remote((run.label, os.getpid(), line))  # no ray.get: see above

    started = time.time()
    send(f"{run.label}: starting")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), progress.relayed(send):
        try:
            check_visible(files)
        except DataNotVisible as error:
            return jobs.ModelRun(run.name, error=str(error)), None, output.getvalue()
        with tempfile.TemporaryDirectory() as folder:
            path = None if run.path is None else Path(folder) / run.path.name
            result = jobs.train_and_test(run.name, run.build, frames, run.protocol, path=path, classes=classes,
                                          provenance=provenance, keep_model=False, fit_model=run.fit_model,
                                          augmentation=run.augmentation, reuse_base=run.reuse_base)
            model_file = path.read_bytes() if result.ok and path is not None else None
    if result.history is not None:
        result.history["worker"] = {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "ended": time.time()}
    return dataclasses.replace(result, path=None), model_file, output.getvalue()


@dataclasses.dataclass
class RayEngine:
    """Runs a chapter's runs as Ray tasks, each on ``threads`` CPU threads (0: the cluster's CPUs shared out) and a GPU where there are any.

    ``retries``: how often a run whose worker died is started again before its row
    says it failed.  ``pids`` holds, per run label, the worker processes that ran
    it (the tests kill one); ``started_seconds`` the time joining or starting the
    cluster took.
    """

    threads: int = 0
    retries: int = 1
    pids: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    started_seconds: float = 0.0
    description: str = "ray"

    def resources(self, runs: int, cpus: int, gpus: int, cpus_per_gpu: int | None = None) -> dict[str, int]:
        """What each of ``runs`` runs asks Ray for on a cluster of ``cpus`` CPUs and ``gpus`` GPUs.

        With GPUs a run asks for one GPU and at most ``cpus_per_gpu``, the fewest
        CPUs a GPU node has per GPU (:func:`cpus_per_gpu`): the cluster's CPUs
        shared out asked a GPU node with one CPU for two, and no run ever started.
        """
        if gpus:
            share = cpus // gpus if cpus_per_gpu is None else cpus_per_gpu
            return {"num_cpus": min(self.threads or max(1, share), share), "num_gpus": 1}
        return {"num_cpus": self.threads or max(1, cpus // max(1, runs)), "num_gpus": 0}

    def run(self, runs: list[jobs.Run], frames: dict[str, pd.DataFrame], *, classes: list[str],
            provenance: dict[str, Any]) -> Iterator[tuple[jobs.Run, jobs.ModelRun]]:
        """Submit every run, then yield each with its result as it finishes; its model file is written here."""
        ray = import_ray()
        from ray.util.queue import Queue

        self.started_seconds = connect()
        cpus, gpus = capacity()
        asked = self.resources(len(runs), cpus, gpus, cpus_per_gpu() if gpus else None)
        threads = str(max(1, asked["num_cpus"]))
        env = {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads, "OMP_NUM_THREADS": threads,
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        side_by_side = max(1, min(cpus // max(1, asked["num_cpus"]), gpus or cpus))
        self.description = (f"ray: {len(runs)} runs, {asked['num_cpus']} CPU thread{'s' if asked['num_cpus'] > 1 else ''}"
                            f"{' and a GPU' if asked['num_gpus'] else ''} each, up to {side_by_side} side by side")
        print(f"Training on Ray ({self.description}; cluster joined in {self.started_seconds:.1f} s).", flush=True)
        task = ray.remote(max_calls=1)(execute).options(max_retries=self.retries, runtime_env={"env_vars": env}, **asked)
        relay = Queue(actor_options={"num_cpus": 0})
        shared = [ray.put(frames), ray.put(data_files(frames)), ray.put(classes), ray.put(provenance)]
        pending = {task.remote(run, *shared, relay): run for run in runs}
        latest: dict[str, str] = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
                self._drain(relay, latest, [run.label for run in pending.values()])
                for ref in ready:
                    run = pending.pop(ref)
                    latest.pop(run.label, None)
                    yield run, self._gather(ray, ref, run, classes, provenance)
        except BaseException:  # Ctrl-C (or the chapter failing): nothing keeps running on the cluster
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            ray.kill(relay.actor)

    def _drain(self, relay: Any, latest: dict[str, str], running: list[str]) -> None:
        """Take the workers' progress lines and report the running ones' latest, one after another."""
        while not relay.empty():
            label, pid, line = relay.get_nowait()
            if pid not in self.pids.setdefault(label, []):
                self.pids[label].append(pid)
            latest[label] = line
        shown = [latest[label] for label in running if label in latest]  # each line starts with its run's label
        if shown:
            progress.report(" | ".join(shown))

    def _gather(self, ray: Any, ref: Any, run: jobs.Run, classes: list[str], provenance: dict[str, Any]) -> jobs.ModelRun:
        """A finished task's run, its output printed and its model file placed; a dead worker's is a failed row."""
        try:
            result, model_file, output = ray.get(ref)
        except ray.exceptions.RayError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return jobs.ModelRun(run.name, error=f"{type(error).__name__}: its worker died, {1 + self.retries} "
                                                  f"attempt{'s' if self.retries else ''} ({reason})")
        print(output, end="", flush=True)
        if model_file is None or run.path is None:
            return result
        jobs.place_model(run.path, lambda partial: partial.write_bytes(model_file), classes=classes,
                          image_size=list(run.protocol.input_shape[:2]), history=result.history, provenance=provenance)
        model = predict.load_model(run.path)[0] if run.keep_model else None
        return dataclasses.replace(result, path=run.path, model=model)
