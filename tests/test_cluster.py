"""Chapters' training runs on Ray: the local engine's numbers, a killed worker's run retried or reported, data a worker cannot see."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import make_tiny_data
from xrayutils import cli, cluster, jobs

CHAPTER_03 = cli.ROOT / "notebooks" / "03_coronahack_models.ipynb"


def test_the_engine_parameter_names_local_or_ray():
    assert isinstance(cluster.engine("local"), jobs.LocalEngine)
    assert cluster.engine("ray", threads=3).threads == 3
    with pytest.raises(ValueError, match="engine takes 'auto', 'local', 'ray', 'mirrored'; got 'slurm'"):
        cluster.engine("slurm")


def test_asking_for_ray_without_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as where it is not installed
    with pytest.raises(ImportError, match=r'pip install "xrayutils\[cluster\]"'):
        cluster.import_ray()


def test_a_worker_that_does_not_see_the_data_names_the_folder(tmp_path):
    (tmp_path / "a.jpeg").write_bytes(b"12345")
    (tmp_path / "b.jpeg").write_bytes(b"123")
    files = cluster.data_files({"train": pd.DataFrame({"path": [str(tmp_path / "a.jpeg"), str(tmp_path / "b.jpeg")]})})
    cluster.check_visible(files)  # the same files: nothing to say
    (tmp_path / "a.jpeg").unlink()
    (tmp_path / "b.jpeg").write_bytes(b"another image")
    with pytest.raises(cluster.DataNotVisible, match=rf"does not see the chapter's data in {tmp_path}: 1 of 2 images missing "
                                                     r"\(first: .*a.jpeg\); 1 of 2 images of another size"):
        cluster.check_visible(files)


def _results(build, name="03_coronahack_models"):
    saved = json.loads((build / "outputs" / name / "results.json").read_text())["results"]
    return {model: row["metrics"] for model, row in saved["models"].items()}, saved


def test_chapter_03_of_the_smoke_book_on_ray_gives_the_local_engines_numbers(tmp_path, monkeypatch):
    """Two models, one seed each: a local Ray cluster runs the two side by side, one thread each, as the kernel does with one thread.

    One seed, not two: the seeds' runs go to Ray as the models' do (``jobs.train_models`` hands
    every (model, seed) pair to the engine alike), so a second seed doubled the test's time and tested nothing more.
    """
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")  # the local kernel's threads: those of each Ray run
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    data = make_tiny_data(tmp_path / "data")
    common = ["--profile", "smoke", "--data-dir", str(data), "-p", "weights", "none", "-p", "seeds", "[2]",
              "-p", "model_names", "[ResNet34, Xception]", "-p", "run_threads", "1"]
    for engine in ("local", "ray"):
        assert cli.main(["run", str(CHAPTER_03), "--build-dir", str(tmp_path / engine), "--engine", engine, *common]) == 0
    (local, local_saved), (remote, remote_saved) = _results(tmp_path / "local"), _results(tmp_path / "ray")
    assert sorted(remote) == ["ResNet34", "Xception"] and all("error" not in row for row in remote_saved["models"].values())
    assert remote == local  # every metric and interval, exactly
    # the page's own fit_model (Adamax for the backbones, Adam for ResNet34) is what trained on the workers
    assert {name: row["history"]["optimizer"] for name, row in remote_saved["models"].items()} == {"ResNet34": "Adam", "Xception": "Adamax"}
    out = tmp_path / "ray" / "outputs" / "03_coronahack_models"
    for name, row in remote_saved["models"].items():
        per_seed = {seed: {k: v for k, v in scores.items() if k != "fit_seconds"} for seed, scores in row["seeds"].items()}
        assert sorted(per_seed) == ["2"]  # the seed asked for, not the profile's
        assert per_seed == {seed: {k: v for k, v in scores.items() if k != "fit_seconds"}
                            for seed, scores in local_saved["models"][name]["seeds"].items()}
        assert (out / row["model_file"]).exists() and (out / row["model_file"]).with_suffix(".json").exists()
        pd.testing.assert_frame_equal(pd.read_csv(out / row["predictions_file"]),
                                      pd.read_csv(tmp_path / "local" / "outputs" / "03_coronahack_models" / row["predictions_file"]))
    recorded = json.loads((out / "run_info.json").read_text())["parameters"]
    assert recorded["engine"] == "ray"


def _faults(*args: str, folder) -> dict:
    """``tests/ray_faults.py`` run in a process of its own: what it printed last (JSON), or a failure with its output."""
    done = subprocess.run([sys.executable, "-m", "tests.ray_faults", *args, str(folder)], cwd=cli.ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, f"ray_faults {' '.join(args)} ended with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("retries", [1, 0])
def test_a_run_whose_worker_is_killed_is_retried_or_reported_failed_while_the_others_finish(tmp_path, retries):
    found = _faults("kill", str(retries), folder=tmp_path)
    rows, pids = found["rows"], found["pids"]
    assert rows["tiny, seed 2"]["ok"]
    if retries:
        assert rows["tiny, seed 1"]["ok"] and len(pids["tiny, seed 1"]) == 2  # a second worker ran it
    else:
        assert not rows["tiny, seed 1"]["ok"] and "its worker died, 1 attempt" in rows["tiny, seed 1"]["error"]


def test_runs_never_outnumber_the_clusters_cpus_while_they_report_progress(tmp_path):
    """A worker waiting on Ray (as Queue.put_nowait does) gives its CPU back, and Ray started a second run beside it."""
    ran = sorted(_faults("one_cpu", folder=tmp_path).values(), key=lambda worker: worker["started"])
    assert len(ran) == 2 and ran[0]["pid"] != ran[1]["pid"]
    assert ran[1]["started"] >= ran[0]["ended"], f"two runs at once on one CPU: {ran}"


def test_a_cluster_started_with_ray_start_is_joined_when_it_asks_for_rays_token(tmp_path):
    joined = _faults("join", folder=tmp_path)
    assert joined["token"] and joined["auth_mode"] == "token"
    assert joined["cpus"] == 1, f"could not join the cluster: {joined['error']}"


def test_the_token_is_sent_only_when_joining_an_address_with_a_token_and_no_mode_chosen(tmp_path):
    (tmp_path / ".ray").mkdir()
    assert not cluster.token_auth({"RAY_ADDRESS": "head:6379"}, tmp_path)  # no token anywhere
    assert cluster.token_auth({"RAY_ADDRESS": "head:6379", "RAY_AUTH_TOKEN": "secret"}, tmp_path)
    (tmp_path / ".ray" / "auth_token").write_text("secret")
    assert cluster.token_auth({"RAY_ADDRESS": "head:6379"}, tmp_path)
    assert not cluster.token_auth({"RAY_ADDRESS": "head:6379", "RAY_AUTH_MODE": "disabled"}, tmp_path)  # the user's choice
    assert not cluster.token_auth({}, tmp_path)  # a local cluster: Ray decides


def test_ctrl_c_cancels_the_submitted_runs(tmp_path):
    found = _faults("interrupt", folder=tmp_path)
    assert found["interrupted"] and found["finished"] == []
    assert len(found["pids"]) == 2 and found["ended"], f"workers still running after Ctrl-C: {found['alive']}"


def test_runs_start_on_a_cluster_whose_gpu_node_has_fewer_cpus_than_the_cluster_shares_out(tmp_path):
    found = _faults("gpu_node", folder=tmp_path)
    assert found["finished"], "no run started in time: a run asked for more CPUs than the GPU node has"
    assert found["rows"] == {"tiny, seed 1": True, "tiny, seed 2": True} and "1 CPU thread and a GPU each" in found["description"]
