"""A worker with the semantics of the Go SDK (github.com/taskerhq/tasker/worker).

Register handlers for (namespace, handler) pairs, then run(): the worker
long-polls ClaimSteps for them with at most `concurrency` steps at once,
runs each step's handler on its own thread, renews the leases of the steps
it holds in batched ExtendLease calls, and reports outcomes, several at once
(BatchCompleteSteps, BatchFailSteps) when several are ready.

A handler is fn(step) -> dict | None. Raising fails the attempt: a plain
exception is retried with the step's backoff until its attempts run out;
StepFailure says otherwise (retryable=False, retry_after, error_type).

When the server refuses to renew the lease (LEASE_LOST, TIMED_OUT, or
CANCELLED when the step or its task was cancelled) the handler's
step.cancelled event is set and step.cancel_reason holds the typed error; the
worker reports nothing more for that step. On shutdown the worker stops
claiming, lets running handlers finish for up to shutdown_timeout while
still renewing their leases, then sets their cancellation (ShutdownError) and
gives their steps back unrun (ReleaseStep; the attempt is not counted).
"""

from __future__ import annotations

import datetime as _dt
import logging
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import duration_pb2
from tasker.v1 import common_pb2, step_pb2

from .client import Client
from .errors import TaskerError, from_entry_result, from_rpc_error
from .structs import from_struct, to_struct

log = logging.getLogger("tasker_client.worker")

MAX_CLAIM_WAIT = 60.0
MAX_CLAIM_STEPS = 100
MAX_HANDLERS = 100
MAX_LEASES_PER_EXTEND = 500
MAX_BATCH = 100
MIN_HEARTBEAT = 0.1
MAX_ERROR_MESSAGE = 16 << 10
MAX_ERROR_TYPE = 128
_CLAIM_SLACK = 10.0
_REPORT_TIMEOUT = 10.0
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
_LOST = (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)


def _backoff(initial: float, cap: float, n: int) -> float:
    """Exponential from initial, capped, with 20% jitter: the pause after the n-th failure."""
    d = min(cap, initial * (2 ** max(n - 1, 0)))
    return d * (1 - 0.2 * random.random())


class ShutdownError(Exception):
    """The cancellation reason of a handler the worker stopped waiting for at
    shutdown: its step was given back unrun and its result is dropped."""


class StepFailure(Exception):
    """Raise it from a handler to say how the failure is reported:
    retryable=False sends the step to error at once; retry_after (seconds)
    asks for the next attempt after that delay instead of the policy's
    backoff (capped by its max_backoff); error_type is a short
    classification recorded on the step ("timeout", "http_503")."""

    def __init__(self, message: str, *, error_type: str = "", retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable
        self.retry_after = retry_after


def non_retryable(message: str, error_type: str = "") -> StepFailure:
    """A permanent failure: no further attempt."""
    return StepFailure(message, error_type=error_type, retryable=False)


class Step:
    """A claimed step handed to a handler.

    config, context and parents' results are JSON documents (dicts, with
    integral numbers as int; numbers travel as doubles). cancelled is set when
    the handler should stop: cancel_reason is then a LeaseLostError,
    TimedOutError, CancelledError, NotFoundError (tasker_client errors) or a
    ShutdownError.
    """

    def __init__(self, claim: step_pb2.ClaimedStep, client: Client) -> None:
        self.id = claim.step_id
        self.task_id = claim.task_id
        self.namespace = claim.handler.namespace
        self.handler = claim.handler.handler
        self.name = claim.step_name
        self.template_name = claim.template_name
        self.template_version = claim.template_version
        self.correlation_id = claim.correlation_id
        self.attempt = claim.attempt
        self.max_attempts = claim.max_attempts
        self.priority = claim.priority
        self.config = from_struct(claim.config)
        self.context = from_struct(claim.context)
        self.lease_expires_at = claim.lease_expires_at.ToDatetime(tzinfo=_dt.timezone.utc)
        self.execution_deadline = (
            claim.execution_deadline.ToDatetime(tzinfo=_dt.timezone.utc) if claim.HasField("execution_deadline") else None
        )
        self.cancelled = threading.Event()
        self.cancel_reason: BaseException | None = None
        self._client = client
        self._parents = [(p.step_name, p.step_id, p.omitted, from_struct(p.result) if p.HasField("result") else {}) for p in claim.parent_results]
        self._fetched: dict[str, dict] = {}
        self._lock = threading.Lock()

    @property
    def parent_names(self) -> list[str]:
        """The names of the step's parents, in declaration order."""
        return [p[0] for p in self._parents]

    def parent(self, name: str) -> dict[str, Any]:
        """The result of the parent step called name; a result too large to
        travel with the claim is read with GetStep on first use."""
        for pname, pid, omitted, result in self._parents:
            if pname != name:
                continue
            if not omitted:
                return result
            with self._lock:
                if name not in self._fetched:
                    resp = self._client.steps.GetStep(step_pb2.GetStepRequest(id=pid), correlation_id=self.correlation_id)
                    self._fetched[name] = from_struct(resp.step.result)
                return self._fetched[name]
        raise KeyError(f"step {self.name!r} has no parent {name!r} (parents: {self.parent_names})")

    def parents(self) -> dict[str, dict[str, Any]]:
        """Every parent's result by name."""
        return {n: self.parent(n) for n in self.parent_names}

    def sleep(self, seconds: float) -> None:
        """Waits seconds, or raises cancel_reason as soon as the step is cancelled."""
        if self.cancelled.wait(seconds):
            raise self.cancel_reason or ShutdownError("cancelled")

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise self.cancel_reason or ShutdownError("cancelled")

    def _cancel(self, reason: BaseException) -> None:
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()


# States of a step in flight (as in the Go SDK): exactly one of the handler's
# thread, the heartbeat and shutdown moves it out of RUNNING.
RUNNING, REPORTING, LOST, RELEASED = "running", "reporting", "lost", "released"


class _Execution:
    def __init__(self, step: Step, token: str) -> None:
        self.step = step
        self.token = token
        self.state = RUNNING
        self.expires_at = step.lease_expires_at.timestamp()
        self.lease = max(self.expires_at - time.time(), 0.0)
        self.started = time.monotonic()


Handler = Callable[[Step], "dict[str, Any] | None"]


class Worker:
    """Claims, runs and reports steps of its registered handlers.

    client: a tasker_client.Client. worker_id: a stable name of this process
    (1 to 128 bytes) shown by ListHandlers. concurrency: steps run at once.
    claim_wait: how long one ClaimSteps long-poll waits (at most 60s).
    heartbeat_interval: default a third of the shortest lease held, at least
    100ms. shutdown_timeout: how long running handlers may finish at
    shutdown before their steps are released.
    """

    def __init__(
        self,
        client: Client,
        worker_id: str,
        *,
        concurrency: int = 10,
        claim_wait: float = 30.0,
        heartbeat_interval: float | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self._client = client
        self.id = worker_id
        self.concurrency = concurrency if concurrency > 0 else 10
        self.claim_wait = min(claim_wait if claim_wait > 0 else 30.0, MAX_CLAIM_WAIT)
        self.heartbeat_interval = heartbeat_interval
        self.shutdown_timeout = shutdown_timeout
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._cond = threading.Condition()
        self._running: set[_Execution] = set()
        self._stopping = threading.Event()
        self._started = False
        self._reports: list[tuple[_Execution, str, Any]] = []  # (execution, "complete"|"fail", payload)
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        # calls counts the report and heartbeat calls made, by RPC name.
        self.calls: Counter[str] = Counter()

    # registration ---------------------------------------------------------

    def register(self, namespace: str, handler: str, fn: Handler) -> None:
        """Serves handler of namespace with fn; refused for an empty name, a
        handler registered twice, more than 100 handlers, or once running."""
        if not namespace or not handler:
            raise ValueError(f"tasker worker: register: namespace and handler are required (got {namespace!r}, {handler!r})")
        if not callable(fn):
            raise TypeError(f"tasker worker: register {namespace}/{handler}: the handler is not callable")
        with self._cond:
            if self._started:
                raise RuntimeError(f"tasker worker: register {namespace}/{handler}: the worker is already running")
            if (namespace, handler) in self._handlers:
                raise ValueError(f"tasker worker: register {namespace}/{handler}: already registered")
            if len(self._handlers) == MAX_HANDLERS:
                raise ValueError(f"tasker worker: a worker serves at most {MAX_HANDLERS} handlers")
            self._handlers[(namespace, handler)] = fn

    def handler(self, namespace: str, handler: str) -> Callable[[Handler], Handler]:
        """Decorator form of register."""

        def deco(fn: Handler) -> Handler:
            self.register(namespace, handler, fn)
            return fn

        return deco

    # running ---------------------------------------------------------------

    def start(self) -> None:
        """Runs the worker on a background thread; stop() ends it."""
        self._begin()
        self._thread = threading.Thread(target=self._run_guarded, name=f"tasker-worker-{self.id}", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Runs the worker on this thread until stop() (from another thread
        or a signal handler), then shuts down gracefully and returns."""
        self._begin()
        self._run()

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Asks the worker to shut down; with wait, waits for run to end."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if wait and self._thread is not None:
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Waits for a worker started with start() to end; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def in_flight(self) -> int:
        """How many steps this worker holds now."""
        with self._cond:
            return len(self._running)

    def _begin(self) -> None:
        with self._cond:
            if self._started:
                raise RuntimeError("tasker worker: run was already called")
            if not self.id or len(self.id.encode()) > 128:
                raise ValueError("tasker worker: the worker id must be 1 to 128 bytes")
            if not self._handlers:
                raise RuntimeError("tasker worker: no handler registered")
            self._started = True

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - kept for join()'s caller
            self.error = err
            log.exception("worker failed")

    def _run(self) -> None:
        hb_stop = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(hb_stop,), name="tasker-heartbeat", daemon=True)
        reporter_stop = threading.Event()
        reporter = threading.Thread(target=self._reporter, args=(reporter_stop,), name="tasker-reporter", daemon=True)
        heart.start()
        reporter.start()
        log.info("worker started", extra={"worker_id": self.id, "handlers": len(self._handlers), "concurrency": self.concurrency})
        try:
            self._claim_loop()
        finally:
            self._shutdown()
            reporter_stop.set()
            hb_stop.set()
            with self._cond:
                self._cond.notify_all()
            reporter.join()
            heart.join()
            log.info("worker stopped", extra={"worker_id": self.id})

    def _free(self) -> int:
        return max(self.concurrency - len(self._running), 0)

    def _claim_loop(self) -> None:
        refs = [common_pb2.HandlerRef(namespace=ns, handler=h) for ns, h in self._handlers]
        failures = 0
        while not self._stopping.is_set():
            with self._cond:
                while self._free() == 0 and not self._stopping.is_set():
                    self._cond.wait()
                free = self._free()
            if self._stopping.is_set():
                return
            req = step_pb2.ClaimStepsRequest(
                worker_id=self.id, handlers=refs, max_steps=min(free, MAX_CLAIM_STEPS),
                wait=duration_pb2.Duration(seconds=int(self.claim_wait), nanos=int((self.claim_wait % 1) * 1e9)),
            )
            asked = time.monotonic()
            fut = self._client.steps.ClaimSteps.future(req, timeout=self.claim_wait + _CLAIM_SLACK)
            fut.add_done_callback(lambda _f: self._notify())
            with self._cond:
                while not fut.done() and not self._stopping.is_set():
                    self._cond.wait()
            if self._stopping.is_set() and not fut.done():
                fut.cancel()
            try:
                resp = fut.result()
            except grpc.FutureCancelledError:
                return
            except grpc.RpcError as err:
                if self._stopping.is_set():
                    return
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise from_rpc_error(err) from None
                failures += 1
                delay = _backoff(0.1, 5.0, failures)
                log.warning("claim failed; retrying in %.2fs: %s", delay, err.code())
                if self._stopping.wait(delay):
                    return
                continue
            if not resp.steps and time.monotonic() - asked < self.claim_wait / 2:
                # A long-poll that ends early with nothing comes from a server
                # that is shutting down; asking again at once would spin.
                failures += 1
                if self._stopping.wait(_backoff(0.1, 5.0, failures)):
                    return
                continue
            failures = 0
            for claim in resp.steps:
                self._launch(claim)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _launch(self, claim: step_pb2.ClaimedStep) -> None:
        step = Step(claim, self._client)
        fn = self._handlers.get((step.namespace, step.handler))
        if fn is None or self._stopping.is_set():
            reason = "worker does not serve this handler" if fn is None else "worker shutting down"
            self._release(step, claim.lease_token, lambda: step.lease_expires_at.timestamp(), reason)
            return
        e = _Execution(step, claim.lease_token)
        with self._cond:
            self._running.add(e)
            self._cond.notify_all()
        threading.Thread(target=self._execute, args=(e, fn), name=f"tasker-step-{step.id}", daemon=True).start()

    def _execute(self, e: _Execution, fn: Handler) -> None:
        outcome: tuple[str, Any]
        try:
            result = fn(e.step)
            outcome = ("complete", result)
        except BaseException as err:  # noqa: BLE001 - every handler failure is reported
            outcome = ("fail", err)
        with self._cond:
            st = e.state
            if st == RUNNING:
                e.state = REPORTING
                self._reports.append((e, *outcome))
            elif st == LOST:
                self._running.discard(e)
            self._cond.notify_all()
        if st == LOST:
            log.info("handler of step %s returned after its lease was lost (%s); result dropped", e.step.id, e.step.cancel_reason)
        elif st == RELEASED:
            log.info("handler of step %s returned after its step was released; result dropped", e.step.id)

    def _done(self, e: _Execution) -> None:
        with self._cond:
            self._running.discard(e)
            self._cond.notify_all()

    # reporting -------------------------------------------------------------

    def _reporter(self, stop: threading.Event) -> None:
        """Sends the outcomes that are ready, several per call when several are."""
        while True:
            with self._cond:
                while not self._reports and not stop.is_set():
                    self._cond.wait()
                if not self._reports and stop.is_set():
                    return
                batch, self._reports = self._reports, []
            completes = [(e, r) for e, kind, r in batch if kind == "complete"]
            fails = [(e, r) for e, kind, r in batch if kind == "fail"]
            invalid: list[tuple[_Execution, BaseException]] = []
            for i in range(0, len(completes), MAX_BATCH):
                invalid += self._complete(completes[i : i + MAX_BATCH])
            fails += invalid
            for i in range(0, len(fails), MAX_BATCH):
                self._fail(fails[i : i + MAX_BATCH])

    def _lease_end(self, entries: list[_Execution]) -> Callable[[], float]:
        def end() -> float:
            with self._cond:
                return min(e.expires_at for e in entries)

        return end

    def _report(self, name: str, call: Callable[[], Any], lease_end: Callable[[], float], correlation_id: str = ""):
        """One report call, retried on transient errors while the lease runs."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self.calls[name] += 1
                return call()
            except TaskerError as err:
                if err.code not in _TRANSIENT:
                    raise
                wait = _backoff(0.1, 2.0, attempt)
                if time.time() + wait > lease_end():
                    raise
                log.warning("%s failed; retrying in %.2fs: %s", name, wait, err)
                time.sleep(wait)  # reports outlive shutdown on purpose

    def _complete(self, items: list[tuple[_Execution, Any]]) -> list[tuple[_Execution, BaseException]]:
        """Completes items; returns those whose result the server cannot take, to fail them instead."""
        invalid: list[tuple[_Execution, BaseException]] = []
        ready: list[tuple[_Execution, Any]] = []
        for e, result in items:
            try:
                ready.append((e, to_struct(result)))
            except (TypeError, ValueError) as err:
                invalid.append((e, non_retryable(f"the handler's result is not a JSON document: {err}", "invalid_result")))
        if len(ready) == 1:
            e, doc = ready[0]
            try:
                self._report(
                    "CompleteStep",
                    lambda: self._client.steps.CompleteStep(
                        step_pb2.CompleteStepRequest(step_id=e.step.id, lease_token=e.token, result=doc),
                        correlation_id=e.step.correlation_id, timeout=_REPORT_TIMEOUT,
                    ),
                    self._lease_end([e]),
                )
                log.info("step %s completed in %.3fs", e.step.id, time.monotonic() - e.started)
                self._done(e)
            except TaskerError as err:
                if err.code == grpc.StatusCode.INVALID_ARGUMENT:
                    invalid.append((e, non_retryable(f"the server refused the handler's result: {err.message}", "invalid_result")))
                else:
                    self._refused("CompleteStep", e, err)
                    self._done(e)
        elif ready:
            req = step_pb2.BatchCompleteStepsRequest(
                completions=[step_pb2.StepCompletion(step_id=e.step.id, lease_token=e.token, result=doc) for e, doc in ready]
            )
            try:
                resp = self._report(
                    "BatchCompleteSteps",
                    lambda: self._client.steps.BatchCompleteSteps(req, timeout=_REPORT_TIMEOUT),
                    self._lease_end([e for e, _ in ready]),
                )
                results = list(resp.results)
            except TaskerError as err:
                results = [None] * len(ready)
                for e, _ in ready:
                    self._refused("BatchCompleteSteps", e, err)
            for (e, _), r in zip(ready, results):
                err = from_entry_result(r) if r is not None else None
                if err is not None and err.code == grpc.StatusCode.INVALID_ARGUMENT:
                    invalid.append((e, non_retryable(f"the server refused the handler's result: {err.message}", "invalid_result")))
                    continue
                if err is not None:
                    self._refused("BatchCompleteSteps", e, err)
                elif r is not None:
                    log.info("step %s completed in %.3fs", e.step.id, time.monotonic() - e.started)
                self._done(e)
        return invalid

    @staticmethod
    def _failure(e: _Execution, err: BaseException) -> step_pb2.StepFailure:
        typ, retryable, retry_after = "", True, None
        if isinstance(err, StepFailure):
            typ, retryable, retry_after = err.error_type, err.retryable, err.retry_after
        message = str(err) or f"handler failed with an empty {type(err).__name__}"
        if not isinstance(err, (StepFailure, TaskerError)):
            message = "".join(traceback.format_exception_only(type(err), err)).strip() or message
        f = step_pb2.StepFailure(
            step_id=e.step.id, lease_token=e.token,
            error=step_pb2.StepError(message=message.encode()[:MAX_ERROR_MESSAGE].decode(errors="ignore"),
                                     type=typ.encode()[:MAX_ERROR_TYPE].decode(errors="ignore")),
            non_retryable=not retryable,
        )
        if retry_after is not None and retry_after > 0:
            f.retry_after.FromNanoseconds(int(retry_after * 1e9))
        return f

    def _fail(self, items: list[tuple[_Execution, BaseException]]) -> None:
        failures = [self._failure(e, err) for e, err in items]
        if len(items) == 1:
            e, f = items[0][0], failures[0]
            req = step_pb2.FailStepRequest(step_id=f.step_id, lease_token=f.lease_token, error=f.error,
                                           non_retryable=f.non_retryable)
            if f.HasField("retry_after"):
                req.retry_after.CopyFrom(f.retry_after)
            try:
                resp = self._report(
                    "FailStep",
                    lambda: self._client.steps.FailStep(req, correlation_id=e.step.correlation_id, timeout=_REPORT_TIMEOUT),
                    self._lease_end([e]),
                )
                log.info("step %s failed (%s): %s", e.step.id, common_pb2.StepState.Name(resp.state), f.error.message.splitlines()[0] if f.error.message else "")
            except TaskerError as err:
                self._refused("FailStep", e, err)
            self._done(e)
            return
        req = step_pb2.BatchFailStepsRequest(failures=failures)
        try:
            resp = self._report(
                "BatchFailSteps",
                lambda: self._client.steps.BatchFailSteps(req, timeout=_REPORT_TIMEOUT),
                self._lease_end([e for e, _ in items]),
            )
            outcomes = list(resp.outcomes)
        except TaskerError as err:
            outcomes = [None] * len(items)
            for e, _ in items:
                self._refused("BatchFailSteps", e, err)
        for (e, _), o in zip(items, outcomes):
            if o is not None:
                err = from_entry_result(o.result)
                if err is not None:
                    self._refused("BatchFailSteps", e, err)
            self._done(e)

    @staticmethod
    def _refused(method: str, e: _Execution, err: TaskerError) -> None:
        if err.code in (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND):
            log.info("%s of step %s refused; result dropped: %s", method, e.step.id, err)
        else:
            log.warning("%s of step %s failed; the step runs again after its lease expires: %s", method, e.step.id, err)

    def _release(self, step: Step, token: str, lease_end: Callable[[], float], reason: str) -> None:
        try:
            self._report(
                "ReleaseStep",
                lambda: self._client.steps.ReleaseStep(
                    step_pb2.ReleaseStepRequest(step_id=step.id, lease_token=token, reason=reason),
                    correlation_id=step.correlation_id, timeout=_REPORT_TIMEOUT,
                ),
                lease_end,
            )
            log.info("step %s released: %s", step.id, reason)
        except TaskerError as err:
            log.info("ReleaseStep of step %s refused: %s", step.id, err)

    # heartbeat -------------------------------------------------------------

    def _interval(self) -> float | None:
        """The heartbeat's period for the leases held now; call with _cond held."""
        held = [e.lease for e in self._running if e.state in (RUNNING, REPORTING)]
        if not held:
            return None
        if self.heartbeat_interval:
            return self.heartbeat_interval
        return max(min(held) / 3, MIN_HEARTBEAT)

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renews every lease held, in batched ExtendLease calls, no later than
        the interval of the shortest lease held."""
        next_at: float | None = None
        while True:
            with self._cond:
                while not stop.is_set():
                    iv = self._interval()
                    now = time.monotonic()
                    if iv is None:
                        next_at = None
                    elif next_at is None or now + iv < next_at:
                        next_at = now + iv
                    if next_at is not None and now >= next_at:
                        break
                    self._cond.wait(None if next_at is None else next_at - now)
                if stop.is_set():
                    return
                held = [e for e in self._running if e.state in (RUNNING, REPORTING)]
            self._renew(held)
            with self._cond:
                iv = self._interval()
                next_at = None if iv is None else time.monotonic() + iv

    def _renew(self, held: list[_Execution]) -> None:
        with self._cond:
            iv = self._interval() or 1.0
        for i in range(0, len(held), MAX_LEASES_PER_EXTEND):
            batch = held[i : i + MAX_LEASES_PER_EXTEND]
            req = step_pb2.ExtendLeaseRequest(
                worker_id=self.id, leases=[step_pb2.StepLease(step_id=e.step.id, lease_token=e.token) for e in batch]
            )
            try:
                self.calls["ExtendLease"] += 1
                resp = self._client.steps.ExtendLease(req, timeout=max(2 * iv, 1.0))
            except TaskerError as err:
                log.warning("heartbeat failed; retrying at the next beat (%d leases): %s", len(batch), err)
                continue
            if len(resp.extensions) != len(batch):
                log.error("heartbeat answered %d leases for %d", len(resp.extensions), len(batch))
                continue
            for e, ext in zip(batch, resp.extensions):
                self._extended(e, ext)

    def _extended(self, e: _Execution, ext: step_pb2.LeaseExtension) -> None:
        err = from_entry_result(ext.result)
        with self._cond:
            st = e.state
            if err is None:
                if ext.HasField("lease_expires_at"):
                    e.expires_at = ext.lease_expires_at.ToNanoseconds() / 1e9
                return
            lost = err.code in _LOST and st == RUNNING
            if lost:
                e.state = LOST
        if lost:
            e.step._cancel(err)
            log.info("lease of step %s lost (%s); handler cancelled and its result will be dropped", e.step.id, err.reason or err.code.name)
        elif st == RUNNING:
            log.warning("lease of step %s not renewed; retrying at the next beat: %s", e.step.id, err)

    # shutdown --------------------------------------------------------------

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        with self._cond:
            if self._running:
                log.info("shutting down; waiting up to %.1fs for %d running steps", self.shutdown_timeout, len(self._running))
            while self._running and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            abandoned = [e for e in self._running if e.state == RUNNING]
            for e in abandoned:
                e.state = RELEASED
        threads = []
        for e in abandoned:
            e.step._cancel(ShutdownError("tasker worker: shutdown timeout passed; step released"))

            def release(e=e):
                self._release(e.step, e.token, self._lease_end([e]), "worker shut down before the step finished")
                self._done(e)

            t = threading.Thread(target=release, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        # Reports in progress end within their retries, bounded by the lease;
        # handlers whose lease was lost are not waited for.
        with self._cond:
            while any(e.state == REPORTING for e in self._running):
                self._cond.wait()
