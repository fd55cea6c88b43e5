"""Every RPC family once through tasker_client, and the typed errors of the
worker protocol and the state machines."""

from __future__ import annotations

import grpc
import pytest
from conftest import claim, register, wait_for, wait_task

from tasker_client import (
    AlreadyCompletedError,
    AlreadyExistsError,
    CancelledError,
    InvalidArgumentError,
    InvalidStateError,
    LeaseLostError,
    NotFoundError,
    TimedOutError,
    from_entry_result,
    from_struct,
    pb,
    to_struct,
)


def test_registry_family(client, namespace):
    tpl = register(client, namespace, "pair", [{"name": "a"}, {"name": "b", "depends_on": ["a"]}])
    assert [s.name for s in tpl.steps] == ["a", "b"]
    got = client.registry.GetTaskTemplate(pb.GetTaskTemplateRequest(namespace=namespace, name="pair")).template
    assert got.version == "1.0.0" and got.content_hash == tpl.content_hash
    listed = client.registry.ListTaskTemplates(pb.ListTaskTemplatesRequest(namespace=namespace)).templates
    assert [t.name for t in listed] == ["pair"]
    namespaces = client.registry.ListNamespaces(pb.ListNamespacesRequest()).namespaces
    assert namespace in [n.name for n in namespaces]
    claim(client, namespace, "a", wait=0)  # a claim makes the worker known for the handler
    handlers = client.registry.ListHandlers(pb.ListHandlersRequest(namespace=namespace)).handlers
    assert {h.handler.handler for h in handlers} >= {"a", "b"}


def test_task_family_and_correlation(client, namespace):
    register(client, namespace, "one", [{"name": "only"}], max_attempts=1)
    resp, cid = client.tasks.CreateTask.with_correlation(
        pb.CreateTaskRequest(namespace=namespace, name="one", context=to_struct({"n": 3, "x": 1.5, "tags": ["a"]})),
        correlation_id="py-order-1")
    assert cid == "py-order-1"
    task = resp.task
    assert task.correlation_id == "py-order-1"
    assert from_struct(task.context) == {"n": 3, "x": 1.5, "tags": ["a"]}
    assert isinstance(from_struct(task.context)["n"], int)
    _, generated = client.tasks.GetTask.with_correlation(pb.GetTaskRequest(id=task.id))
    assert generated and generated != "py-order-1"  # the server made one for the call
    listed = client.tasks.ListTasks(pb.ListTasksRequest(namespace=namespace)).tasks
    assert [t.id for t in listed] == [task.id]
    graph = client.tasks.GetTaskGraph(pb.GetTaskGraphRequest(id=task.id))
    assert [n.name for n in graph.nodes] == ["only"] and "digraph" in graph.dot

    # Fail the only step for good: the task is in error; retry revives it,
    # resolve closes it by hand.
    (c,) = claim(client, namespace, "only")
    client.steps.FailStep(pb.FailStepRequest(step_id=c.step_id, lease_token=c.lease_token,
                                             error=pb.StepError(message="boom"), non_retryable=True))
    wait_task(client, task.id, pb.TASK_STATE_ERROR)
    retried = client.tasks.RetryTask(pb.RetryTaskRequest(id=task.id, reason="try again")).task
    assert retried.state in (pb.TASK_STATE_PENDING, pb.TASK_STATE_IN_PROGRESS)
    (c,) = claim(client, namespace, "only")
    client.steps.FailStep(pb.FailStepRequest(step_id=c.step_id, lease_token=c.lease_token,
                                             error=pb.StepError(message="boom again"), non_retryable=True))
    wait_task(client, task.id, pb.TASK_STATE_ERROR)
    resolved = client.tasks.ResolveTask(pb.ResolveTaskRequest(id=task.id, reason="handled by hand")).task
    assert resolved.state == pb.TASK_STATE_RESOLVED_MANUALLY

    # A transition the state machine refuses: INVALID_STATE with the state.
    with pytest.raises(InvalidStateError) as e:
        client.cancel_task(task.id, "too late")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.metadata["current_state"] == "TASK_STATE_RESOLVED_MANUALLY"
    assert e.value.correlation_id


def test_step_family(client, namespace):
    register(client, namespace, "three", [{"name": "s1"}, {"name": "s2"}, {"name": "s3"}, {"name": "s4"}],
             max_attempts=2, initial_backoff=0, max_backoff=1)
    task = client.create_task(namespace, "three", {"k": "v"}).task
    steps = client.steps.ListSteps(pb.ListStepsRequest(task_id=task.id, view=pb.STEP_VIEW_FULL)).steps
    assert [s.name for s in steps] == ["s1", "s2", "s3", "s4"]
    by_name = {s.name: s for s in steps}

    got = client.steps.GetStep(pb.GetStepRequest(id=by_name["s1"].id)).step
    assert got.state == pb.STEP_STATE_ENQUEUED

    c1, = claim(client, namespace, "s1")
    c2, = claim(client, namespace, "s2")
    c3, = claim(client, namespace, "s3")
    ext = client.steps.ExtendLease(pb.ExtendLeaseRequest(worker_id="pytest", leases=[
        pb.StepLease(step_id=c1.step_id, lease_token=c1.lease_token),
        pb.StepLease(step_id=c2.step_id, lease_token="not-the-token")]))
    assert from_entry_result(ext.extensions[0].result) is None
    assert isinstance(from_entry_result(ext.extensions[1].result), LeaseLostError)

    # Release gives s3 back unrun: the attempt is not counted.
    client.steps.ReleaseStep(pb.ReleaseStepRequest(step_id=c3.step_id, lease_token=c3.lease_token, reason="test"))
    assert client.steps.GetStep(pb.GetStepRequest(id=c3.step_id)).step.attempts == 0

    done = client.steps.BatchCompleteSteps(pb.BatchCompleteStepsRequest(completions=[
        pb.StepCompletion(step_id=c1.step_id, lease_token=c1.lease_token, result=to_struct({"r": 1})),
        pb.StepCompletion(step_id=c2.step_id, lease_token="not-the-token", result=to_struct({}))]))
    assert from_entry_result(done.results[0]) is None
    assert isinstance(from_entry_result(done.results[1]), LeaseLostError)
    assert from_struct(client.steps.GetStep(pb.GetStepRequest(id=c1.step_id)).step.result) == {"r": 1}

    # Completing again with the same lease and result succeeds again; with a
    # different result it is ALREADY_COMPLETED.
    client.steps.CompleteStep(pb.CompleteStepRequest(step_id=c1.step_id, lease_token=c1.lease_token, result=to_struct({"r": 1})))
    with pytest.raises(AlreadyCompletedError) as e:
        client.steps.CompleteStep(pb.CompleteStepRequest(step_id=c1.step_id, lease_token=c1.lease_token, result=to_struct({"r": 2})))
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.metadata["current_state"] == "STEP_STATE_COMPLETE"

    failed = client.steps.BatchFailSteps(pb.BatchFailStepsRequest(failures=[
        pb.StepFailure(step_id=c2.step_id, lease_token=c2.lease_token, error=pb.StepError(message="no", type="x"),
                       non_retryable=True)]))
    assert from_entry_result(failed.outcomes[0].result) is None
    assert failed.outcomes[0].state == pb.STEP_STATE_ERROR

    # Operator calls: retry the failed step, resolve one, cancel one.
    assert client.steps.RetryStep(pb.RetryStepRequest(id=c2.step_id)).step.state == pb.STEP_STATE_ENQUEUED
    resolved = client.steps.ResolveStep(pb.ResolveStepRequest(id=c2.step_id, result=to_struct({"by": "hand"}))).step
    assert resolved.state == pb.STEP_STATE_RESOLVED_MANUALLY
    assert client.steps.CancelStep(pb.CancelStepRequest(id=by_name["s4"].id)).step.state == pb.STEP_STATE_CANCELLED
    with pytest.raises(InvalidStateError) as e:
        client.steps.CancelStep(pb.CancelStepRequest(id=by_name["s4"].id))
    assert e.value.metadata["current_state"] == "STEP_STATE_CANCELLED"


def test_invalid_argument_and_not_found(client, namespace):
    with pytest.raises(InvalidArgumentError) as e:
        client.tasks.CreateTask(pb.CreateTaskRequest(namespace="Bad Namespace", name=""))
    fields = {v.field for v in e.value.field_violations}
    assert "name" in fields
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(NotFoundError) as e:
        client.get_task("01936f7c-0000-7000-8000-000000000000")
    assert e.value.resource is not None and e.value.resource.resource_type == "task"
    with pytest.raises(ValueError):
        to_struct({"big": 2**60})


def test_lease_lost_error(client, namespace):
    register(client, namespace, "leased", [{"name": "work"}], lease=1, max_attempts=3, initial_backoff=0, max_backoff=1)
    client.create_task(namespace, "leased", {})
    first, = claim(client, namespace, "work")
    # Without heartbeats the lease runs out; the reaper puts the step back
    # and a second claim gets a new token: the first is lost.
    second, = claim(client, namespace, "work", wait=20)
    assert second.attempt == 2
    with pytest.raises(LeaseLostError) as e:
        client.steps.CompleteStep(pb.CompleteStepRequest(step_id=first.step_id, lease_token=first.lease_token))
    assert e.value.code == grpc.StatusCode.ABORTED


def test_timed_out_error(client, namespace):
    register(client, namespace, "timed", [{"name": "work"}], lease=30, execution_timeout=1, max_attempts=1)
    client.create_task(namespace, "timed", {})
    c, = claim(client, namespace, "work")

    def timed_out():
        r = client.steps.ExtendLease(pb.ExtendLeaseRequest(
            worker_id="pytest", leases=[pb.StepLease(step_id=c.step_id, lease_token=c.lease_token)])).extensions[0].result
        return isinstance(from_entry_result(r), TimedOutError)

    wait_for(timed_out, 20, 0.1, "the attempt to time out")
    with pytest.raises(TimedOutError) as e:
        client.steps.CompleteStep(pb.CompleteStepRequest(step_id=c.step_id, lease_token=c.lease_token))
    assert e.value.code == grpc.StatusCode.ABORTED


def test_cancelled_error(client, namespace):
    register(client, namespace, "cancel", [{"name": "work"}])
    task = client.create_task(namespace, "cancel", {}).task
    c, = claim(client, namespace, "work")
    assert client.cancel_task(task.id, "no longer needed").state == pb.TASK_STATE_CANCELLED
    with pytest.raises(CancelledError) as e:
        client.steps.FailStep(pb.FailStepRequest(step_id=c.step_id, lease_token=c.lease_token,
                                                 error=pb.StepError(message="x")))
    assert e.value.code == grpc.StatusCode.ABORTED and e.value.reason == "CANCELLED"


def test_event_family(client, namespace):
    types = client.events.ListEventTypes(pb.ListEventTypesRequest()).event_types
    assert "task.created" in {t.name for t in types}
    register(client, namespace, "ev", [{"name": "work"}])
    task = client.create_task(namespace, "ev", {}, correlation_id="py-events-1").task
    published = client.events.PublishEvent(pb.PublishEventRequest(
        type="billing.invoice_sent", task_id=task.id, payload=to_struct({"invoice": "inv-7", "amount": 12})),
        correlation_id="py-events-1").event
    assert published.sequence > 0 and published.correlation_id == "py-events-1"
    listed = client.events.ListEvents(pb.ListEventsRequest(filter=pb.EventFilter(task_id=task.id))).events
    assert [e.type for e in listed][0] == "task.created"
    assert listed[-1].type == "billing.invoice_sent"
    assert from_struct(listed[-1].payload) == {"invoice": "inv-7", "amount": 12}

    # A raw stream: started first, then the task's events from the beginning.
    stream = client.events.Subscribe(pb.SubscribeRequest(filter=pb.EventFilter(task_id=task.id),
                                                         start=pb.START_POSITION_BEGINNING))
    assert stream.correlation_id
    seen = []
    for msg in stream:
        if msg.WhichOneof("message") == "event":
            seen.append(msg.event.sequence)
            if msg.event.sequence == published.sequence:
                stream.cancel()
    assert seen == [e.sequence for e in listed]


def test_already_exists_and_duplicates(client, namespace):
    tpl = pb.TaskTemplate(namespace=namespace, name="keyed", version="1.0.0",
                          identity_strategy=pb.IDENTITY_STRATEGY_CALLER_KEY, steps=[pb.StepTemplate(name="a", handler="a")])
    client.registry.RegisterTaskTemplate(pb.RegisterTaskTemplateRequest(template=tpl))
    first = client.create_task(namespace, "keyed", {"n": 1}, idempotency_key="k-1")
    again = client.create_task(namespace, "keyed", {"n": 1}, idempotency_key="k-1")
    assert again.duplicate and again.task.id == first.task.id
    with pytest.raises(AlreadyExistsError) as e:
        client.create_task(namespace, "keyed", {"n": 2}, idempotency_key="k-1")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_create_tasks(client, namespace):
    tpl = pb.TaskTemplate(namespace=namespace, name="keyed", version="1.0.0",
                          identity_strategy=pb.IDENTITY_STRATEGY_CALLER_KEY, steps=[pb.StepTemplate(name="a", handler="a")])
    client.registry.RegisterTaskTemplate(pb.RegisterTaskTemplateRequest(template=tpl))
    outcomes = client.create_tasks([
        {"namespace": namespace, "name": "keyed", "context": {"n": 1}, "idempotency_key": "k-1"},
        pb.CreateTaskRequest(namespace=namespace, name="keyed", context=to_struct({"n": 1}), idempotency_key="k-1"),
        {"namespace": namespace, "name": "keyed", "context": {"n": 2}, "idempotency_key": "k-1"},
        {"namespace": namespace, "name": "missing"},
    ], correlation_id="py-batch-1")
    assert [from_entry_result(o.result) is None for o in outcomes] == [True, True, False, False]
    first, again = outcomes[0], outcomes[1]
    assert not first.duplicate and again.duplicate and again.task.id == first.task.id
    assert first.task.correlation_id == "py-batch-1" and first.task.step_counts.total == 1
    assert isinstance(from_entry_result(outcomes[2].result), AlreadyExistsError)
    assert isinstance(from_entry_result(outcomes[3].result), NotFoundError)
    assert client.get_task(first.task.id).id == first.task.id
