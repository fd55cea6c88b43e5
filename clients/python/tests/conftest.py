"""A real `tasker serve` for the tests: the binary is built once, each server
gets free ports and its own SQLite file, and is stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(HERE.parent), str(REPO / "gen" / "python")]

from tasker_client import Client, pb, to_struct  # noqa: E402

_HEALTH = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def wait_for(cond, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Polls cond until it returns a true value, or fails after timeout."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `tasker serve` process on 127.0.0.1."""

    def __init__(self, binary: Path, workdir: Path, args: list[str] | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.db = workdir / "tasker.db"
        self.args = list(args or [])
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "server.log"
        self.tls_ca: Path | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError(f"tasker {' '.join(args)}: {out.stderr}")
        return out.stdout

    def start(self, extra: list[str] | None = None) -> Server:
        cmd = [str(self.binary), "serve", "--database", str(self.db), "--grpc-addr", self.address,
               "--admin-addr", "", "--shutdown-timeout", "2s", *self.args, *(extra or [])]
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, cwd=self.workdir)
        logf.close()
        self._wait_serving()
        return self

    def _wait_serving(self, timeout: float = 60.0) -> None:
        if self.tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=self.tls_ca.read_bytes(),
                                                 private_key=self._client_key, certificate_chain=self._client_cert)
            ch = grpc.secure_channel(self.address, creds)
        else:
            ch = grpc.insecure_channel(self.address)
        check = ch.unary_unary(_HEALTH, request_serializer=lambda b: b, response_deserializer=lambda b: b)

        def serving():
            if self.proc.poll() is not None:
                raise AssertionError(f"tasker serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                return check(b"", timeout=1) == _SERVING
            except grpc.RpcError:
                return False

        try:
            wait_for(serving, timeout, 0.05, "tasker serve to report SERVING")
        finally:
            ch.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self, **kw) -> Client:
        return Client(self.address, **kw)


@pytest.fixture(scope="session")
def tasker_bin(tmp_path_factory) -> Path:
    if os.environ.get("TASKER_BIN"):  # a binary built already, e.g. by make
        return Path(os.environ["TASKER_BIN"]).resolve()
    out = tmp_path_factory.mktemp("bin") / "tasker"
    env = dict(os.environ, GOFLAGS=os.environ.get("GOFLAGS", "-buildvcs=false"))
    subprocess.run(["go", "build", "-o", str(out), "./cmd/tasker"], cwd=REPO, check=True, env=env)
    return out


@pytest.fixture(scope="session")
def server(tasker_bin, tmp_path_factory):
    s = Server(tasker_bin, tmp_path_factory.mktemp("server"),
               ["--auth", "none", "--templates", str(REPO / "examples" / "templates")])
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()


@pytest.fixture
def namespace(request) -> str:
    """A namespace of the test's own, so no two tests share steps."""
    base = request.node.name.lower().replace("test_", "", 1)
    base = "".join(ch if ch.isalnum() else "-" for ch in base)[:40].strip("-")
    return f"py-{base}-{uuid.uuid4().hex[:6]}"


def duration(seconds: float) -> pb.Duration:
    d = pb.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def register(client: Client, namespace: str, name: str, steps: list[dict], *, lease: float | None = None,
             execution_timeout: float | None = None, max_attempts: int | None = None,
             initial_backoff: float | None = None, max_backoff: float | None = None) -> pb.TaskTemplate:
    """Registers a template of steps given as dicts: name, handler, depends_on, config."""
    tpl = pb.TaskTemplate(namespace=namespace, name=name, version="1.0.0")
    for s in steps:
        st = tpl.steps.add(name=s["name"], handler=s.get("handler", s["name"]), depends_on=s.get("depends_on", []))
        if "config" in s:
            st.config.CopyFrom(to_struct(s["config"]))
    if lease is not None:
        tpl.lease_duration.CopyFrom(duration(lease))
    if execution_timeout is not None:
        tpl.execution_timeout.CopyFrom(duration(execution_timeout))
    if max_attempts is not None:
        tpl.retry_policy.max_attempts = max_attempts
    if initial_backoff is not None:
        tpl.retry_policy.initial_backoff.CopyFrom(duration(initial_backoff))
    if max_backoff is not None:
        tpl.retry_policy.max_backoff.CopyFrom(duration(max_backoff))
    return client.registry.RegisterTaskTemplate(pb.RegisterTaskTemplateRequest(template=tpl)).template


def claim(client: Client, namespace: str, handler: str, n: int = 1, wait: float = 10.0, worker_id: str = "pytest"):
    """Claims up to n steps of handler, waiting until at least one is due."""
    resp = client.steps.ClaimSteps(pb.ClaimStepsRequest(
        worker_id=worker_id, handlers=[pb.HandlerRef(namespace=namespace, handler=handler)],
        max_steps=n, wait=duration(wait)))
    return list(resp.steps)


def task_state(client: Client, task_id: str) -> int:
    return client.get_task(task_id).state


def wait_task(client: Client, task_id: str, state: int, timeout: float = 20.0):
    return wait_for(lambda: task_state(client, task_id) == state, timeout, 0.05,
                    f"task {task_id} to be {pb.TaskState.Name(state)}")
