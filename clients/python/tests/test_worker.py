"""The Worker against a real server: a DAG with parents' results and batched
reports, retries, lease loss, cancellation and graceful shutdown."""

from __future__ import annotations

import threading

import pytest
from conftest import register, wait_for, wait_task

from tasker_client import (
    CancelledError,
    LeaseLostError,
    ShutdownError,
    StepFailure,
    Worker,
    from_struct,
    non_retryable,
    pb,
)


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop(wait=True, timeout=60)


def start(workers, w: Worker) -> Worker:
    w.start()
    workers.append(w)
    return w


def step_of(client, task_id: str, name: str):
    for s in client.get_task(task_id).steps:
        if s.name == name:
            return client.steps.GetStep(pb.GetStepRequest(id=s.id)).step  # with its result
    raise KeyError(name)


def test_dag_parents_and_batched_reports(client, namespace, workers):
    register(client, namespace, "chain", [{"name": "first", "config": {"factor": 2}},
                                          {"name": "second", "depends_on": ["first"]}])
    n = 10
    gate = threading.Event()
    arrived = threading.Semaphore(0)
    w = Worker(client, "py-dag", concurrency=n, claim_wait=5)

    @w.handler(namespace, "first")
    def first(step):
        arrived.release()
        gate.wait(30)  # all n finish together, so their reports pile up
        return {"n": step.context["i"] * step.config["factor"], "half": 0.5}

    @w.handler(namespace, "second")
    def second(step):
        parent = step.parent("first")
        assert step.parent_names == ["first"]
        assert isinstance(parent["n"], int), parent
        return {"sum": parent["n"] + 1, "half": parent["half"]}

    start(workers, w)
    tasks = [client.create_task(namespace, "chain", {"i": i}).task.id for i in range(n)]
    for _ in range(n):
        assert arrived.acquire(timeout=30), "every first step runs at once"
    gate.set()
    for i, tid in enumerate(tasks):
        wait_task(client, tid, pb.TASK_STATE_COMPLETE, timeout=60)
        assert from_struct(step_of(client, tid, "second").result) == {"sum": 2 * i + 1, "half": 0.5}
    assert w.calls["BatchCompleteSteps"] >= 1, w.calls
    handlers = client.registry.ListHandlers(pb.ListHandlersRequest(namespace=namespace)).handlers
    assert all("py-dag" in [x.worker_id for x in h.workers] for h in handlers)


def test_retry_and_non_retryable(client, namespace, workers):
    register(client, namespace, "flaky", [{"name": "flaky"}, {"name": "broken"}],
             max_attempts=3, initial_backoff=0, max_backoff=1)
    attempts = []
    w = Worker(client, "py-retry", claim_wait=5)

    @w.handler(namespace, "flaky")
    def flaky(step):
        attempts.append(step.attempt)
        if step.attempt == 1:
            raise RuntimeError("connection reset")
        if step.attempt == 2:
            raise StepFailure("busy", error_type="http_503", retry_after=0.2)
        return {"ok": True}

    @w.handler(namespace, "broken")
    def broken(step):
        raise non_retryable("cart is not valid", "bad_cart")

    start(workers, w)
    tid = client.create_task(namespace, "flaky", {}).task.id
    wait_for(lambda: step_of(client, tid, "flaky").state == pb.STEP_STATE_COMPLETE, 30, 0.05, "flaky to complete")
    assert attempts == [1, 2, 3]
    wait_task(client, tid, pb.TASK_STATE_ERROR)
    b = step_of(client, tid, "broken")
    assert b.state == pb.STEP_STATE_ERROR and b.attempts == 1
    assert b.last_error.type == "bad_cart" and b.last_error.message == "cart is not valid"
    f = client.steps.ListSteps(pb.ListStepsRequest(task_id=tid, view=pb.STEP_VIEW_FULL)).steps[0]
    assert f.last_error.type == "http_503"


def test_lease_loss_cancels_handler(client, namespace, workers):
    register(client, namespace, "leased", [{"name": "slow"}], lease=1, max_attempts=3, initial_backoff=0, max_backoff=1)
    reasons = []
    # A heartbeat slower than the lease: the lease runs out and the next
    # beat learns it was lost.
    w = Worker(client, "py-lease", heartbeat_interval=2.5, claim_wait=5)

    @w.handler(namespace, "slow")
    def slow(step):
        if step.attempt == 1:
            assert step.cancelled.wait(30), "the lease loss reaches the handler"
            reasons.append(step.cancel_reason)
            return {"dropped": True}
        return {"attempt": step.attempt}

    start(workers, w)
    tid = client.create_task(namespace, "leased", {}).task.id
    wait_task(client, tid, pb.TASK_STATE_COMPLETE, timeout=30)
    wait_for(lambda: reasons, 10, 0.05, "the first handler to see its lease lost")
    assert isinstance(reasons[0], LeaseLostError) and reasons[0].reason == "LEASE_LOST"
    result = from_struct(step_of(client, tid, "slow").result)
    assert result["attempt"] >= 2  # the first attempt's result was dropped


def test_cancellation_reaches_handler(client, namespace, workers):
    register(client, namespace, "cancel", [{"name": "wait"}])
    running = threading.Event()
    reasons = []
    w = Worker(client, "py-cancel", heartbeat_interval=0.2, claim_wait=5)

    @w.handler(namespace, "wait")
    def wait(step):
        running.set()
        try:
            step.sleep(30)
        except CancelledError as err:
            reasons.append(err)
            raise
        return {}

    start(workers, w)
    tid = client.create_task(namespace, "cancel", {}).task.id
    assert running.wait(30)
    client.cancel_task(tid, "customer withdrew")
    wait_for(lambda: reasons, 20, 0.05, "the cancellation to reach the handler")
    assert reasons[0].reason == "CANCELLED"
    wait_for(lambda: w.in_flight() == 0, 10, 0.05, "the slot to free")
    assert w.calls["FailStep"] == 0 and w.calls["CompleteStep"] == 0  # nothing reported after a loss
    assert step_of(client, tid, "wait").state == pb.STEP_STATE_CANCELLED


def test_graceful_shutdown_finishes_or_releases(client, namespace, workers):
    register(client, namespace, "shutdown", [{"name": "quick"}, {"name": "stuck"}])
    started = {"quick": threading.Event(), "stuck": threading.Event()}
    gate = threading.Event()
    reasons = []
    w = Worker(client, "py-shutdown", shutdown_timeout=1.5, claim_wait=5)

    @w.handler(namespace, "quick")
    def quick(step):
        started["quick"].set()
        gate.wait(30)
        return {"finished": "during shutdown"}

    @w.handler(namespace, "stuck")
    def stuck(step):
        started["stuck"].set()
        if not step.cancelled.wait(30):
            return {"too": "late"}
        reasons.append(step.cancel_reason)
        return {"dropped": True}

    w.start()
    tid = client.create_task(namespace, "shutdown", {}).task.id
    assert started["quick"].wait(30) and started["stuck"].wait(30)
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    gate.set()  # quick finishes within the shutdown timeout; stuck does not
    stopper.join(60)
    assert w.join(0), "stop returns once everything is reported or released"
    q, s = step_of(client, tid, "quick"), step_of(client, tid, "stuck")
    assert q.state == pb.STEP_STATE_COMPLETE and from_struct(q.result) == {"finished": "during shutdown"}
    assert s.state == pb.STEP_STATE_ENQUEUED and s.attempts == 0  # released unrun, attempt not counted
    assert isinstance(reasons[0], ShutdownError)
    assert w.calls["ReleaseStep"] == 1


def test_register_rules(client):
    w = Worker(client, "py-rules")
    with pytest.raises(RuntimeError, match="no handler"):
        w.run()
    w.register("ns", "h", lambda step: {})
    with pytest.raises(ValueError, match="already registered"):
        w.register("ns", "h", lambda step: {})
    with pytest.raises(ValueError, match="required"):
        w.register("", "h", lambda step: {})
    bad = Worker(client, "x" * 129)
    bad.register("ns", "h", lambda step: {})
    with pytest.raises(ValueError, match="1 to 128 bytes"):
        bad.run()
