"""``eagle3 serve``: server plans, readiness, logs and clean shutdown — with a stand-in vLLM module.

The stand-in is a real ``vllm.entrypoints.openai.api_server`` module on ``PYTHONPATH``: it
serves ``/v1/models`` on the given port and starts a grandchild process, as vLLM's engine
does, so the tests can check that stopping reaches the whole process tree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from builders.fake_openai import free_consecutive_ports
from eagle3cli.config import ServeConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.serving.launcher import ServerGroup, plan_servers
from eagle3cli.vllm_process import resolve_vllm_python

FAKE_API_SERVER = '''
import argparse, http.server, json, os, signal, subprocess, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--model"); parser.add_argument("--host"); parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()
mode = os.environ.get("FAKE_VLLM_MODE", "ok")
print("fake vllm", " ".join(sys.argv[1:]), "gpus:", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
if mode == "crash":
    print("RuntimeError: the fake engine failed to start", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "hang":
    time.sleep(3600)
if mode == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
engine = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN) if %r == 'ignore-sigterm' else None; time.sleep(3600)" % mode])
with open(os.environ["FAKE_VLLM_PIDS"], "a") as pids:
    pids.write(f"{os.getpid()} {engine.pid}\\n")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": args.model}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer((args.host, args.port), Handler).serve_forever()
'''


@pytest.fixture()
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a stand-in ``vllm`` package on PYTHONPATH; returns the file its processes write their pids to."""
    package = tmp_path / "fake_site" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(FAKE_API_SERVER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake_site"))
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv("FAKE_VLLM_PIDS", str(pids))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return pids


def config(**settings: object) -> ServeConfig:
    return ServeConfig(target_model=settings.pop("target_model", "org/model"), **settings)  # type: ignore[arg-type]


def test_one_server_per_gpu_group_with_its_devices_port_and_tensor_parallel() -> None:
    plan = plan_servers(config(gpus_per_server=2, base_port=7000, dtype="bfloat16"), "py", ["4", "5", "6", "7"])
    assert [(server.port, server.gpus) for server in plan] == [(7000, ["4", "5"]), (7001, ["6", "7"])]
    assert plan[1].env()["CUDA_VISIBLE_DEVICES"] == "6,7"
    assert plan[1].command == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "org/model", "--host", "127.0.0.1",
        "--port", "7001", "--dtype", "bfloat16", "--tensor-parallel-size", "2",
    ]


def test_extra_args_and_speculative_config_pass_through() -> None:
    draft = {"method": "eagle3", "model": "/drafts/d", "num_speculative_tokens": 3}
    settings = config(speculative_config=draft, max_model_len=4096, extra_args=["--tensor-parallel-size=1", "--enforce-eager"])
    (server,) = plan_servers(settings.model_copy(update={"gpus_per_server": 2}), "py", ["0", "1"])
    assert server.command[-6:] == [
        "--max-model-len", "4096", "--speculative-config", json.dumps(draft), "--tensor-parallel-size=1", "--enforce-eager",
    ]


def test_without_gpus_one_server_by_default_and_no_device_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (server,) = plan_servers(config(), "py", [])
    assert "CUDA_VISIBLE_DEVICES" not in server.env() and "--tensor-parallel-size" not in server.command
    assert [server.port for server in plan_servers(config(num_servers=3), "py", [])] == [6000, 6001, 6002]


def test_cpu_servers_turn_chunked_prefill_off_unless_the_extra_args_choose() -> None:
    (cpu,) = plan_servers(config(extra_args=["--enforce-eager"]), "py", [])
    assert cpu.command[-2:] == ["--no-enable-chunked-prefill", "--enforce-eager"]
    (chosen,) = plan_servers(config(extra_args=["--enable-chunked-prefill"]), "py", [])
    assert chosen.command.count("--no-enable-chunked-prefill") == 0 and chosen.command[-1] == "--enable-chunked-prefill"
    (gpu,) = plan_servers(config(), "py", ["0"])
    assert not any("chunked-prefill" in arg for arg in gpu.command)


def test_cpu_servers_get_all_cores_and_no_aot_compile_cache_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_USE_AOT_COMPILE")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    (cpu,) = plan_servers(config(), "py", [])
    assert [cpu.env()[name] for name in names] == ["0", "0"]
    (gpu,) = plan_servers(config(), "py", ["0"])  # GPU servers: vLLM's own defaults
    assert not set(names) & set(gpu.env())
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    monkeypatch.setenv("VLLM_USE_AOT_COMPILE", "1")
    assert [cpu.env()[name] for name in names] == ["1", "1"]


def test_too_few_gpus_is_an_error() -> None:
    with pytest.raises(Eagle3Error, match="3 servers x 2 GPU"):
        plan_servers(config(num_servers=3, gpus_per_server=2), "py", ["0", "1", "2", "3"])
    with pytest.raises(Eagle3Error, match="fewer than --gpus-per-server 4"):
        plan_servers(config(gpus_per_server=4), "py", ["0", "1"])


def test_a_python_without_vllm_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGLE3_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("PYTHONPATH", "")
    with pytest.raises(Eagle3Error, match="cannot import vllm.*setup_vllm_venv.sh"):
        resolve_vllm_python(sys.executable)
    with pytest.raises(Eagle3Error, match="cannot run /no/such/python"):
        resolve_vllm_python("/no/such/python")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _all_pids(pids_file: Path) -> list[int]:
    return [int(pid) for line in pids_file.read_text().splitlines() for pid in line.split()]


def _wait_for_line(process: subprocess.Popen[str], count: int, timeout_s: float = 60) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(lines) < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


def test_serve_waits_for_every_server_prints_endpoints_and_stops_all_on_sigterm(
    fake_vllm: Path, tmp_path: Path
) -> None:
    base = free_consecutive_ports(2)
    command = [sys.executable, "-m", "eagle3cli", "serve", "--target-model", "tiny", "--num-servers", "2",
               "--base-port", str(base), "--log-dir", str(tmp_path / "logs"), "--vllm-python", sys.executable,
               "--", "--enforce-eager"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        endpoints = _wait_for_line(process, 2)
        assert endpoints == [f"http://127.0.0.1:{base}/v1", f"http://127.0.0.1:{base + 1}/v1"]
        for endpoint in endpoints:
            assert httpx.get(f"{endpoint}/models").json()["data"][0]["id"] == "tiny"
        pids = _all_pids(fake_vllm)
        assert len(pids) == 4 and all(_alive(pid) for pid in pids)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert not any(_alive(pid) for pid in pids)
    log = (tmp_path / "logs" / f"server-1-port-{base + 1}.log").read_text()
    assert f"--port {base + 1} --dtype auto --no-enable-chunked-prefill --enforce-eager" in log


def test_a_server_that_fails_to_start_stops_the_rest_and_shows_its_log(
    fake_vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    base = free_consecutive_ports(1)
    result = subprocess.run(
        [sys.executable, "-m", "eagle3cli", "serve", "--target-model", "tiny", "--base-port", str(base),
         "--log-dir", str(tmp_path / "logs"), "--vllm-python", sys.executable],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "exited with code 3" in result.stderr and "the fake engine failed to start" in result.stderr


def test_a_server_that_never_answers_times_out_with_its_log(fake_vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    (server,) = plan_servers(config(base_port=free_consecutive_ports(1)), sys.executable, [])
    group = ServerGroup([server], "127.0.0.1", tmp_path / "logs")
    group.start()
    try:
        with pytest.raises(Eagle3Error, match=r"(?s)not ready after 0.5 s.*fake vllm"):
            group.wait_ready(0.5, poll_interval_s=0.1)
    finally:
        group.stop(grace_s=5)
    assert server.process is not None and server.process.returncode is not None


def test_stop_kills_a_process_tree_that_ignores_sigterm(fake_vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "ignore-sigterm")
    (server,) = plan_servers(config(base_port=free_consecutive_ports(1)), sys.executable, [])
    group = ServerGroup([server], "127.0.0.1", tmp_path / "logs")
    group.start()
    group.wait_ready(30, poll_interval_s=0.1)
    pids = _all_pids(fake_vllm)
    started = time.monotonic()
    group.stop(grace_s=0.5)
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)


def test_a_busy_port_is_refused_before_starting_anything(fake_vllm: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (server,) = plan_servers(config(base_port=port), sys.executable, [])
        with pytest.raises(Eagle3Error, match=f"cannot listen on 127.0.0.1:{port}"):
            ServerGroup([server], "127.0.0.1", tmp_path / "logs").start()
    assert server.process is None


def test_a_server_dying_after_start_stops_the_others_and_fails(fake_vllm: Path, tmp_path: Path) -> None:
    base = free_consecutive_ports(2)
    command = [sys.executable, "-m", "eagle3cli", "serve", "--target-model", "tiny", "--num-servers", "2",
               "--base-port", str(base), "--log-dir", str(tmp_path / "logs"), "--vllm-python", sys.executable]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert len(_wait_for_line(process, 2)) == 2
        pids = _all_pids(fake_vllm)
        os.kill(pids[0], signal.SIGKILL)
        assert process.wait(timeout=30) == 1
        assert process.stderr is not None and "exited with code -9" in process.stderr.read()
    finally:
        process.kill()
    assert not any(_alive(pid) for pid in pids)
