"""``xai export --engine ray``: the same export on Ray Data, checked against the local engine.

The Ray tests share one local Ray (``ray.init(num_cpus=2)``, started once for the module: Ray and
its actors' TensorFlow start-up are the expensive part on a small machine); the missing-extra and
validation tests start no Ray at all.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_export import make_folder, output_files, png_bomb, read_manifest, run_cli
from test_export_golden import messy_folder

import xai
from xai import testing
from xai.errors import MissingDependencyError, XaiTypeError, XaiValueError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    testing.functional_cnn((32, 32, 3)).save(path)
    return path


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module (2 CPUs); exports in this process use it, others join it."""
    import logging

    ray = pytest.importorskip("ray", reason="the Ray engine needs: pip install 'xai[ray]'")

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _rows(out: Path) -> set[str]:
    return {json.dumps(r, sort_keys=True) for r in read_manifest(out)}


@pytest.mark.slow
def test_ray_engine_writes_the_files_and_manifest_of_the_local_engine(
    tmp_path, model_path, ray_address
):
    src = messy_folder(tmp_path / "in")  # nested folders, odd names, grey/RGBA/16-bit, faults
    png_bomb(src / "bad/bomb.png")  # refused from its header
    kwargs = {"batch_size": 3, "alpha": 0.5, "progress": False}
    local = xai.export(str(model_path), src, tmp_path / "local", **kwargs)
    on_ray = xai.export(str(model_path), src, tmp_path / "ray", engine="ray", actors=2, **kwargs)

    assert (on_ray.ok, on_ray.failed, on_ray.skipped) == (local.ok, local.failed, local.skipped)
    assert (on_ray.ok, on_ray.failed, on_ray.exit_code) == (11, 3, 1)
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")  # the same rows, in any order
    reasons = {r["path"]: r["error"] for r in read_manifest(tmp_path / "ray")}
    assert "max_pixels" in reasons["bad/bomb.png"] and reasons["bad/empty.jpg"]
    ray_files, local_files = output_files(tmp_path / "ray"), output_files(tmp_path / "local")
    assert len(local_files) > 30
    assert sorted(ray_files) == sorted(local_files)
    assert [p for p in local_files if ray_files[p] != local_files[p]] == []  # byte-identical

    # A rerun on the other engine skips the images done and retries only the 3 failures.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*.png")}
    again = xai.export(str(model_path), src, tmp_path / "ray", **kwargs)
    assert (again.processed, again.already_done, again.ok, again.failed) == (3, 11, 11, 3)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*.png")} == stamps
    assert output_files(tmp_path / "ray") == local_files


@pytest.mark.slow
def test_ray_driver_killed_mid_run_resumes_to_identical_bytes(tmp_path, model_path, ray_address):
    src = make_folder(tmp_path / "in", 48, size=(16, 20))
    # A corrupt file in the first chunk: the resumed run retries it, recomputing a chunk whose
    # other images are done (and must be written neither again nor twice).
    (src / "class0" / "img000b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    slow = tmp_path / "slow_pre.py"  # slow decoding: the kill lands mid-run
    slow.write_text("import time\n\ndef slow(x):\n    time.sleep(0.05)\n    return x / 255.0\n")
    out, ref = tmp_path / "out", tmp_path / "ref"
    opts = ["--batch-size", "4", "--preprocess", f"{slow}:slow", "-q"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xai", "export", str(model_path), str(src), str(out), *opts]
        + ["--engine", "ray", "--address", ray_address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b'"status": "ok"') >= 8:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read()[-2000:]!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_ok = manifest.read_bytes().count(b'"status": "ok"')
    assert 8 <= killed_ok < 48

    code, _, err = run_cli("export", model_path, src, out, *opts, "--engine", "ray")
    assert code == 1 and "img000b.png" in err  # the corrupt file
    summary = json.loads((out / "summary.json").read_text())
    assert summary["already_done"] >= killed_ok and (summary["ok"], summary["failed"]) == (48, 1)
    assert not list(out.rglob("*.tmp"))
    code, _, err = run_cli("export", model_path, src, ref, *opts)  # uninterrupted, local
    assert code == 1, err
    assert output_files(out) == output_files(ref)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"actors": 3}, r"at most 2 actors with 1 CPU.*has 2 CPUs"),
        ({"cpus_per_actor": 1.5, "actors": 2}, r"at most 1 actors with 1.5 CPU"),
        ({"gpus_per_actor": 1}, r"at most 0 actors .* 1 GPU"),
    ],
)
def test_ray_engine_refuses_a_pool_the_cluster_cannot_hold(
    tmp_path, model_path, ray_address, options, match
):
    src = make_folder(tmp_path / "in", 2)
    with pytest.raises(XaiValueError, match=match):
        xai.export(str(model_path), src, tmp_path / "out", engine="ray", progress=False, **options)


@pytest.mark.slow
def test_actors_reserve_a_one_node_rays_cpus_unless_told(ray_address):
    import ray

    from xai.export.ray_engine import RayOptions, _cpus_per_actor

    def cpus(**kwargs):
        options = {"address": None, "actors": 1, "gpus_per_actor": 0, "cpus_per_actor": None}
        return _cpus_per_actor(ray, RayOptions.checked(**(options | kwargs)))

    # Ray caps an actor's OpenMP (TensorFlow) threads at its CPUs: one actor gets both cores.
    assert (cpus(), cpus(actors=2), cpus(actors=3)) == (2.0, 1.0, 1.0)
    assert cpus(actors=2, cpus_per_actor=0.5) == 0.5


def test_missing_ray_extra_says_how_to_install_it(tmp_path, model_path, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    src = make_folder(tmp_path / "in", 2)
    with pytest.raises(MissingDependencyError, match=r"pip install 'xai\[ray\]'") as info:
        xai.export(str(model_path), src, tmp_path / "out", engine="ray", progress=False)
    assert isinstance(info.value, ImportError)
    code, _, err = run_cli("export", model_path, src, tmp_path / "cli", "--engine", "ray")
    assert code == 2 and "pip install 'xai[ray]'" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"engine": "spark"}, XaiValueError, r"`engine` must be 'local' or 'ray'.*'spark'"),
        ({"actors": 2}, XaiValueError, r"`actors` applies to engine='ray' only"),
        ({"address": "auto"}, XaiValueError, r"`address` applies to engine='ray' only"),
        ({"cpus_per_actor": 1}, XaiValueError, r"`cpus_per_actor` applies to engine='ray'"),
        ({"engine": "ray", "actors": 0}, XaiValueError, r"`actors` must be a positive int"),
        ({"engine": "ray", "gpus_per_actor": -1}, XaiValueError, r"`gpus_per_actor` must be"),
        ({"engine": "ray", "cpus_per_actor": 0}, XaiValueError, r"`cpus_per_actor` must be"),
        ({"engine": "ray", "address": ""}, XaiValueError, r"`address` must be"),
        ({"engine": "ray", "strategy": object()}, XaiValueError, r"--gpus-per-actor"),
    ],
)
def test_engine_options_are_checked(tmp_path, model_path, kwargs, error, match):
    src = make_folder(tmp_path / "in", 1)
    with pytest.raises(error, match=match):
        xai.export(str(model_path), src, tmp_path / "out", progress=False, **kwargs)


def test_ray_engine_needs_a_model_path(tmp_path):
    src = make_folder(tmp_path / "in", 1)
    with pytest.raises((XaiValueError, XaiTypeError), match=r"each Ray actor loads the model"):
        xai.export(testing.functional_cnn((32, 32, 3)), src, tmp_path / "o", engine="ray")


def test_errors_of_actors_are_unwrapped():
    from xai.errors import OutputStorageError
    from xai.export.ray_engine import _raised

    inner = OutputStorageError("disk full")

    class Wrapped(RuntimeError):  # the shape of ray.exceptions.RayTaskError: .cause
        cause = inner

    try:
        try:
            raise Wrapped("actor failed")
        except Wrapped as exc:
            raise RuntimeError("dataset failed") from exc
    except RuntimeError as outer:
        assert _raised(outer) is inner
    plain = RuntimeError("no xai error inside")
    assert _raised(plain) is plain
