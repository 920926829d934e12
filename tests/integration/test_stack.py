"""`steward up` / `stack-status` / `down` and the containers' preflight as they run: real processes, loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.gateway import free_port

ROOT = Path(__file__).resolve().parents[2]
STEWARD = str(Path(sys.executable).parent / "steward")


def _steward(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([STEWARD, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def _ports() -> dict[str, int]:
    return {name: free_port() for name in ("prefect", "mlflow", "gateway", "deployments", "evidently")}


def _port_options(ports: dict[str, int]) -> list[str]:
    return [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]


@pytest.mark.slow
def test_up_starts_five_healthy_services_and_down_stops_exactly_them(two_versions, write_spec, settings):
    model, _, _ = two_versions
    spec_path = write_spec()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ports = _ports()
    try:
        # two start waves of up to 180 s each (the stack's own limit) on a busy machine
        result = _steward("up", str(spec_path), "--home", str(settings.home), *_port_options(ports), timeout=420)
        assert result.returncode == 0, result.stdout + result.stderr
        records = {p.stem: json.loads(p.read_text()) for p in (settings.home / "run").glob("*.json")}
        assert set(records) == {"prefect", "mlflow", "gateway", "deployments", "evidently"}
        checks = {
            "prefect": f"http://127.0.0.1:{ports['prefect']}/api/health",
            "mlflow": f"http://127.0.0.1:{ports['mlflow']}/health",
            "gateway": f"http://127.0.0.1:{ports['gateway']}/readyz",
            "deployments": f"http://127.0.0.1:{ports['deployments']}/health",
            "evidently": f"http://127.0.0.1:{ports['evidently']}/api/version",
        }
        for name, url in checks.items():
            assert httpx.get(url, timeout=10).status_code == 200, name
        ready = httpx.get(checks["gateway"], timeout=10).json()
        assert model in json.dumps(ready)
        deployments = httpx.post(f"http://127.0.0.1:{ports['prefect']}/api/deployments/filter",
                                 json={"limit": 200, "sort": "NAME_ASC"}, timeout=10).json()
        assert {d["name"] for d in deployments} == {model}
        assert all((settings.home / "logs" / f"{name}.log").stat().st_size > 0 for name in records)

        status = _steward("stack-status", "--home", str(settings.home), timeout=60)
        assert status.returncode == 0 and status.stdout.count("healthy") == 5, status.stdout

        again = _steward("up", str(spec_path), "--home", str(settings.home), *_port_options(ports), timeout=60)
        assert again.returncode == 0 and again.stdout.count("already running") == 5

        _watch_restarts_a_crashed_service(spec_path, settings.home, ports, records["deployments"]["pid"])

        records = {p.stem: json.loads(p.read_text()) for p in (settings.home / "run").glob("*.json")}
        pids = {name: record["pid"] for name, record in records.items()}
        down = _steward("down", "--home", str(settings.home), timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        for name, pid in pids.items():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
            assert f"{name}: stopped" in down.stdout
        assert not list((settings.home / "run").glob("*.json"))
        assert bystander.poll() is None, "down stopped a process it did not start"
        assert "nothing to stop" in _steward("down", "--home", str(settings.home), timeout=60).stdout
    finally:
        _steward("down", "--home", str(settings.home), timeout=120)
        bystander.kill()


def _watch_restarts_a_crashed_service(spec_path: Path, home: Path, ports: dict[str, int], victim: int) -> None:
    """`steward up --watch` over the running stack: a service killed under it is started again and healthy."""
    log = home / "watch.log"
    with log.open("w") as out:
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("PREFECT_API_URL", None)
        watcher = subprocess.Popen([STEWARD, "up", str(spec_path), "--home", str(home), *_port_options(ports),
                                    "--watch"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        _wait_for(lambda: log.read_text().count("already running") == 5, 120, log)
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: "deployments: healthy again" in log.read_text(), 300, log)
        assert "deployments: stale pid file; restarting (1/3)" in log.read_text()
        record = json.loads((home / "run" / "deployments.json").read_text())
        assert record["pid"] != victim and psutil.pid_exists(record["pid"])
        assert httpx.get(f"http://127.0.0.1:{ports['deployments']}/health", timeout=10).status_code == 200
        assert watcher.poll() is None, "the watcher keeps watching"
    finally:
        watcher.terminate()  # not Ctrl-C: that would stop the stack, which `down` is tested on next
        watcher.wait(timeout=60)


def _wait_for(condition, seconds: float, log: Path) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)


@pytest.mark.slow
def test_a_taken_port_is_refused_before_anything_starts(write_spec, tmp_path):
    spec_path = write_spec()
    ports = _ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["mlflow"]))
        blocker.listen()
        result = _steward("up", str(spec_path), "--home", str(tmp_path / "home"), *_port_options(ports), timeout=60)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"port {ports['mlflow']} on 127.0.0.1 for the mlflow service is already in use" in message
    assert "--mlflow-port" in message
    assert not list((tmp_path / "home" / "run").glob("*.json"))


def test_the_same_port_twice_is_refused(write_spec, tmp_path):
    port = free_port()
    result = _steward("up", str(write_spec()), "--home", str(tmp_path / "home"), "--prefect-port", str(port),
                      "--gateway-port", str(port), timeout=60)
    assert result.returncode == 1
    assert "more than one service" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_preflight_loads_the_champion(two_versions):
    model, _, _ = two_versions
    result = subprocess.run([sys.executable, "-m", "deployments.preflight", model], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "champion loaded and digest verified" in result.stdout


@pytest.mark.slow
def test_preflight_refuses_a_model_without_a_champion(model_name):
    result = subprocess.run([sys.executable, "-m", "deployments.preflight", model_name], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert f"{model_name}: no champion" in result.stderr


def _production(write_spec, tmp_path, monkeypatch, **overrides):
    from steward.config import Settings
    from steward.stack import Profile, StackConfig

    monkeypatch.setenv("STEWARD_ADMIN_TOKEN", "plan-token")
    settings = Settings(home=tmp_path / "home")
    config = StackConfig(spec_paths=(str(write_spec()),), profile=Profile.PRODUCTION, **overrides)
    return settings, config


def test_the_production_plan_orders_services_and_keeps_the_password_off_command_lines(write_spec, tmp_path,
                                                                                        monkeypatch):
    from steward.stack import plan_services

    monkeypatch.setenv("STEWARD_POSTGRES_PASSWORD", "secret-pw-1")
    settings, config = _production(write_spec, tmp_path, monkeypatch, replicas=3, gateway_port=free_port(),
                                   postgres_port=free_port())
    services = plan_services(settings, config)
    assert [(s.name, s.wave) for s in services] == [
        ("postgres", 0), ("prefect", 1), ("mlflow", 1), ("gateway-1", 2), ("gateway-2", 2), ("gateway-3", 2),
        ("worker", 2), ("evidently", 1)]
    assert [s.port for s in services if s.name.startswith("gateway")] == list(config.gateway_ports)
    postgres = services[0]
    assert postgres.stop_signal == signal.SIGINT and postgres.health_url.startswith("postgresql://")
    assert postgres.user == ("postgres" if os.geteuid() == 0 else None)
    for service in services:
        written = " ".join(service.command) + json.dumps(service.env)
        assert "secret-pw-1" not in written, service.name
    from steward.credentials import ControlPlaneSecrets

    ControlPlaneSecrets(settings.home).ensure()  # what `up` does before the first wave
    secrets = {s.name: s.secret_env() for s in services if s.secret_env}
    assert secrets["prefect"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://steward:secret-pw-1@")
    assert secrets["mlflow"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://steward:secret-pw-1@")
    for service in services[3:7]:  # the gateways and the worker; Evidently's UI reads only its workspace
        assert service.env["STEWARD_TRACKING_URI"] == config.mlflow_url, service.name


def test_a_taken_replica_port_names_the_gateway_option(write_spec, tmp_path, monkeypatch):
    from steward.processes import PortTaken, check_ports
    from steward.stack import plan_services

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        second = blocker.getsockname()[1]
        settings, config = _production(write_spec, tmp_path, monkeypatch, replicas=2, gateway_port=second - 1)
        with pytest.raises(PortTaken, match=f"port {second} on 127.0.0.1 for the gateway-2 service .*--gateway-port"):
            check_ports(plan_services(settings, config), config.host)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root Steward runs PostgreSQL as another user")
def test_a_home_the_postgres_user_cannot_reach_is_refused_with_the_folder(tmp_path):
    from steward.postgres import Cluster, PostgresError

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(PostgresError, match="cannot enter .*chmod o\\+x ") as refused:
        Cluster(locked / "home", free_port()).initialise()
    assert str(locked) in str(refused.value)
    assert not (locked / "home" / "postgres" / "data").exists()
