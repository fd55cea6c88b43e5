"""Tokens, TLS with client certificates, and the typed errors of
authentication, authorization, rate limits and log retention, against a
server with --auth token, mutual TLS, a rate limit and a one-event log."""

from __future__ import annotations

import subprocess

import grpc
import pytest
from conftest import Server, wait_for

from tasker_client import (
    Client,
    LogTruncatedError,
    NamespaceDeniedError,
    RateLimitedError,
    ScopeMissingError,
    Subscriber,
    TaskerError,
    TokenInvalidError,
    pb,
)

TOKENS = {  # name: (scopes, namespaces)
    "ops": ("admin", "*"),
    "reader": ("tasks:read", "*"),
    "shop": ("tasks:read", "shop"),
    "busy": ("tasks:read", "*"),
}


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=tasker-test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def secured(tasker_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("secured")
    make_certs(d)
    s = Server(tasker_bin, d, ["--auth", "none"])
    # First some events in the log, then a restart that keeps only the newest.
    s.start()
    with s.client() as c:
        for i in range(3):
            c.events.PublishEvent(pb.PublishEventRequest(type="test.filler", payload=None))
    s.stop()
    secrets = {}
    for name, (scopes, namespaces) in TOKENS.items():
        secrets[name] = s.cli("token", "create", "--database", str(s.db), "--name", name,
                              "--scopes", scopes, "--namespaces", namespaces).strip()
    s.args = ["--auth", "token", "--rate-limit", "1", "--rate-burst", "2", "--event-retention-count", "1",
              "--tls-cert", str(d / "server.crt"), "--tls-key", str(d / "server.key"),
              "--tls-client-ca", str(d / "ca.crt")]
    s.tls_ca = d / "ca.crt"
    s._client_cert, s._client_key = (d / "client.crt").read_bytes(), (d / "client.key").read_bytes()
    s.start()
    s.secrets = secrets
    s.dir = d
    yield s
    s.stop()


def tls_client(s, token: str | None, **kw) -> Client:
    return Client(s.address, token=token, ca_file=str(s.dir / "ca.crt"), cert_file=str(s.dir / "client.crt"),
                  key_file=str(s.dir / "client.key"), **kw)


def test_token_over_mutual_tls(secured):
    with tls_client(secured, secured.secrets["reader"]) as c:
        resp, cid = c.tasks.ListTasks.with_correlation(pb.ListTasksRequest(), correlation_id="py-tls-1")
        assert cid == "py-tls-1" and list(resp.tasks) == []


def test_without_client_certificate_the_handshake_fails(secured):
    with Client(secured.address, token=secured.secrets["reader"], ca_file=str(secured.dir / "ca.crt")) as c:
        with pytest.raises(TaskerError) as e:
            c.tasks.ListTasks(pb.ListTasksRequest(), timeout=10)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_token_is_never_sent_in_the_clear_off_loopback():
    with pytest.raises(ValueError, match="TLS"):
        Client("192.0.2.1:50051", token="tasker_x")
    with pytest.raises(ValueError, match="both"):
        Client("127.0.0.1:1", cert_file="client.crt")


def test_token_invalid(secured):
    with tls_client(secured, "tasker_not-a-token") as c, pytest.raises(TokenInvalidError) as e:
        c.tasks.ListTasks(pb.ListTasksRequest())
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with tls_client(secured, None) as c, pytest.raises(TokenInvalidError):
        c.tasks.ListTasks(pb.ListTasksRequest())


def test_scope_missing(secured):
    with tls_client(secured, secured.secrets["reader"]) as c, pytest.raises(ScopeMissingError) as e:
        c.create_task("shop", "order", {})
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.metadata["scope"] == "tasks:write"


def test_namespace_denied(secured):
    with tls_client(secured, secured.secrets["shop"]) as c, pytest.raises(NamespaceDeniedError) as e:
        c.tasks.ListTasks(pb.ListTasksRequest(namespace="billing"))
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.metadata["namespace"] == "billing"


def test_rate_limited(secured):
    with tls_client(secured, secured.secrets["busy"]) as c:
        with pytest.raises(RateLimitedError) as e:
            for _ in range(20):  # 1 call/s with a burst of 2: some call of these is refused
                c.tasks.ListTasks(pb.ListTasksRequest())
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.retry_after is not None and 0 < e.value.retry_after <= 2


def test_log_truncated(secured):
    with tls_client(secured, secured.secrets["ops"]) as c:
        def truncated():
            stream = c.events.Subscribe(pb.SubscribeRequest(start=pb.START_POSITION_AFTER_SEQUENCE, after_sequence=1))
            try:
                next(iter(stream))  # "started": not trimmed yet
            except LogTruncatedError as err:
                return err
            except RateLimitedError:
                pass
            finally:
                stream.cancel()
            return None

        # The retention pass runs at start-up, beside serving.
        err = wait_for(truncated, 20, 0.5, "the log to be trimmed to one event")
        assert err.code == grpc.StatusCode.OUT_OF_RANGE
        assert int(err.metadata["oldest_sequence"]) > 2
        # The subscriber does not retry what it cannot resume.
        with pytest.raises(LogTruncatedError):
            for _ in Subscriber(c, after_sequence=1):
                pass
