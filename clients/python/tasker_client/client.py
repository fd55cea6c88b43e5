"""The client: one gRPC channel and the four services of tasker.v1."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
from tasker.v1 import event_pb2_grpc, registry_pb2_grpc, step_pb2_grpc, task_pb2, task_pb2_grpc

from .errors import from_rpc_error
from .structs import to_struct

CORRELATION_HEADER = "x-correlation-id"


def new_correlation_id() -> str:
    """A fresh correlation id."""
    return str(uuid.uuid4())


def _header(md, key: str) -> str:
    for k, v in md or ():
        if k == key:
            return v
    return ""


def _loopback(address: str) -> bool:
    host = address
    if "://" in host:
        host = host.split("://", 1)[1]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Method:
    """One RPC of a service. Call it with the request message; keyword
    arguments: correlation_id (sent as x-correlation-id), timeout (seconds),
    metadata (extra pairs). Failures raise tasker_client.TaskerError
    subclasses. with_correlation returns (response, the server's correlation
    id)."""

    def __init__(self, client: Client, multicallable, streaming: bool) -> None:
        self._client = client
        self._mc = multicallable
        self._streaming = streaming

    def __call__(self, request, *, correlation_id: str | None = None, timeout: float | None = None, metadata=()):
        if self._streaming:
            return Stream(self._mc(request, timeout=timeout, metadata=self._client._metadata(correlation_id, metadata)))
        return self.with_correlation(request, correlation_id=correlation_id, timeout=timeout, metadata=metadata)[0]

    def with_correlation(self, request, *, correlation_id: str | None = None, timeout: float | None = None, metadata=()):
        if self._streaming:
            s = self(request, correlation_id=correlation_id, timeout=timeout, metadata=metadata)
            return s, s.correlation_id
        try:
            resp, call = self._mc.with_call(request, timeout=timeout, metadata=self._client._metadata(correlation_id, metadata))
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return resp, _header(call.initial_metadata(), CORRELATION_HEADER)

    def future(self, request, *, correlation_id: str | None = None, timeout: float | None = None, metadata=()):
        """The grpc future of the call (unary calls); its errors are raw grpc.RpcError."""
        return self._mc.future(request, timeout=timeout, metadata=self._client._metadata(correlation_id, metadata))


class Stream:
    """A server stream: iterate it for the responses; failures raise typed
    errors; cancel() ends it from any thread."""

    def __init__(self, call) -> None:
        self._call = call

    def __iter__(self) -> Iterator:
        try:
            yield from self._call
        except grpc.RpcError as err:
            if self._call.code() == grpc.StatusCode.CANCELLED and getattr(self, "_cancelled", False):
                return
            raise from_rpc_error(err) from None

    @property
    def correlation_id(self) -> str:
        """The server's correlation id of the stream (waits for its headers)."""
        try:
            return _header(self._call.initial_metadata(), CORRELATION_HEADER)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class Service:
    """The methods of one generated stub, wrapped as Method."""

    def __init__(self, client: Client, stub, streaming: Sequence[str] = ()) -> None:
        for name, value in vars(stub).items():
            if callable(value):
                setattr(self, name, Method(client, value, name in streaming))


class Client:
    """A connection to a Tasker server.

    address is host:port. token is sent as "authorization: Bearer <token>"
    on every call; like the Go SDK it is refused without TLS unless the
    server is on loopback. TLS is on when tls=True or any of ca_file
    (the PEM bundle that signed the server's certificate; system roots
    when omitted), cert_file and key_file (a client certificate for mutual
    TLS; both or neither) is given; server_name overrides the name checked
    against the server's certificate.

    The services are client.tasks, client.steps, client.registry and
    client.events, with the RPC names of the contract:

        client.tasks.CreateTask(pb.CreateTaskRequest(...), correlation_id="order-1")
        resp, cid = client.tasks.GetTask.with_correlation(pb.GetTaskRequest(id=...))
    """

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name: str | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("TLS client certificate: give both cert_file and key_file, or neither")
        use_tls = tls or ca_file is not None or cert_file is not None
        opts = list(options)
        if use_tls:
            def read(path):
                with open(path, "rb") as f:
                    return f.read()

            creds = grpc.ssl_channel_credentials(
                root_certificates=read(ca_file) if ca_file else None,
                private_key=read(key_file) if key_file else None,
                certificate_chain=read(cert_file) if cert_file else None,
            )
            if server_name:
                opts.append(("grpc.ssl_target_name_override", server_name))
            self.channel = grpc.secure_channel(address, creds, options=opts)
        else:
            if token and not _loopback(address):
                raise ValueError(
                    "tasker client: refusing to send a token without TLS to a server that is not on loopback; configure TLS"
                )
            self.channel = grpc.insecure_channel(address, options=opts)
        self.address = address
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()
        self.tasks = Service(self, task_pb2_grpc.TaskServiceStub(self.channel))
        self.steps = Service(self, step_pb2_grpc.StepServiceStub(self.channel))
        self.registry = Service(self, registry_pb2_grpc.RegistryServiceStub(self.channel))
        self.events = Service(self, event_pb2_grpc.EventServiceStub(self.channel), streaming=("Subscribe",))

    def _metadata(self, correlation_id: str | None, extra=()) -> tuple:
        md = self._auth + tuple(extra)
        if correlation_id:
            md += ((CORRELATION_HEADER, correlation_id),)
        return md

    def create_task(
        self,
        namespace: str,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        version: str = "",
        priority: int = 0,
        idempotency_key: str = "",
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> task_pb2.CreateTaskResponse:
        """CreateTask with a JSON context; the response's task and duplicate flag."""
        req = task_pb2.CreateTaskRequest(
            namespace=namespace, name=name, version=version, context=to_struct(context),
            priority=priority, idempotency_key=idempotency_key,
        )
        return self.tasks.CreateTask(req, correlation_id=correlation_id, timeout=timeout)

    def create_tasks(
        self,
        tasks: Sequence[task_pb2.CreateTaskRequest | Mapping[str, Any]],
        *,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> list[task_pb2.CreateTaskOutcome]:
        """BatchCreateTasks: 1 to 100 tasks in one transaction, one outcome per
        entry in order, each answered as CreateTask would answer it alone
        (from_entry_result(outcome.result) is its error, None when it is OK).
        An entry is a CreateTaskRequest, or a mapping of create_task's
        arguments: namespace, name, context, version, priority,
        idempotency_key. Outcomes carry the task without its steps and
        context."""
        reqs = []
        for t in tasks:
            if not isinstance(t, task_pb2.CreateTaskRequest):
                t = task_pb2.CreateTaskRequest(
                    namespace=t["namespace"], name=t["name"], version=t.get("version", ""),
                    context=to_struct(t.get("context")), priority=t.get("priority", 0),
                    idempotency_key=t.get("idempotency_key", ""),
                )
            reqs.append(t)
        resp = self.tasks.BatchCreateTasks(task_pb2.BatchCreateTasksRequest(tasks=reqs),
                                           correlation_id=correlation_id, timeout=timeout)
        return list(resp.outcomes)

    def get_task(self, task_id: str, *, timeout: float | None = None):
        """GetTask: the task with its steps."""
        return self.tasks.GetTask(task_pb2.GetTaskRequest(id=task_id), timeout=timeout).task

    def cancel_task(self, task_id: str, reason: str = "", *, correlation_id: str | None = None):
        """CancelTask: every unfinished step is cancelled; workers holding one see it as cancellation."""
        return self.tasks.CancelTask(task_pb2.CancelTaskRequest(id=task_id, reason=reason), correlation_id=correlation_id).task

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Waits until the channel is connected, or raises grpc.FutureTimeoutError."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
