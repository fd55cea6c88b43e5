import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import {
  AlreadyCompletedError,
  CancelledError,
  Code,
  Correlation,
  InvalidStateError,
  LeaseLostError,
  LogTruncatedError,
  NamespaceDeniedError,
  RateLimitedError,
  ScopeMissingError,
  StartPosition,
  StepState,
  TaskerError,
  TaskState,
  TimedOutError,
  TokenInvalidError,
  fromStruct,
  toStruct,
  toTaskerError,
  subscribe,
  type TaskerClient,
} from "../src/index.js";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { startServer, template, uniqueNamespace, waitFor, type Server } from "./harness.js";

let server: Server;
let client: TaskerClient;

before(async () => {
  server = await startServer();
  client = server.client();
});
after(async () => server?.stop());

async function rejectsWith<E extends TaskerError>(p: Promise<unknown>, cls: new (...a: never[]) => E): Promise<E> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `want ${cls.name}, got ${String(err)}`);
    return err;
  }
  assert.fail(`want ${cls.name}, the call succeeded`);
}

/** claimOne registers a one-step template, creates a task and claims its step. */
async function claimOne(opts: { leaseMs?: number; timeoutMs?: number } = {}) {
  const ns = uniqueNamespace();
  await client.registry.registerTaskTemplate(template(ns, [{ name: "only", handler: "work", ...opts }]));
  const { task } = await client.tasks.createTask({ namespace: ns, name: "flow" });
  const claim = await waitFor("a claim", async () => {
    const res = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "work" }], maxSteps: 1, wait: { seconds: 5n } });
    return res.steps[0];
  });
  return { ns, task: task!, claim };
}

describe("RPC families", () => {
  test("health", async () => {
    assert.equal(await client.checkHealth(), true);
  });

  test("registry, tasks, steps and events", async () => {
    const ns = uniqueNamespace();
    const reg = await client.registry.registerTaskTemplate(
      template(ns, [
        { name: "a", handler: "first", config: { n: 1 } },
        { name: "b", handler: "second", dependsOn: ["a"] },
      ]),
    );
    assert.equal(reg.template?.namespace, ns);
    const got = await client.registry.getTaskTemplate({ namespace: ns, name: "flow", version: "1.0.0" });
    assert.deepEqual(got.template?.steps.map((s) => s.name), ["a", "b"]);
    assert.deepEqual(got.template?.steps[0]?.config, { n: 1 });
    const list = await client.registry.listTaskTemplates({ namespace: ns });
    assert.equal(list.templates.length, 1);
    const nss = await client.registry.listNamespaces({ pageSize: 500 });
    assert.ok(nss.namespaces.some((n) => n.name === ns));

    const corr = new Correlation(`corr-${ns}`);
    const created = await client.tasks.createTask({ namespace: ns, name: "flow", context: toStruct({ order: 42, items: [{ qty: 2 }] }) }, corr.options);
    const task = created.task!;
    assert.equal(corr.id, `corr-${ns}`);
    assert.equal(task.correlationId, `corr-${ns}`);
    const fresh = new Correlation();
    await client.tasks.getTask({ id: task.id }, fresh.options);
    assert.ok(fresh.id, "the server answers a correlation id");
    assert.deepEqual(fromStruct((await client.tasks.getTask({ id: task.id })).task?.context), { order: 42, items: [{ qty: 2 }] });
    const tasks = await client.tasks.listTasks({ namespace: ns });
    assert.deepEqual(tasks.tasks.map((t) => t.id), [task.id]);
    const graph = await client.tasks.getTaskGraph({ id: task.id });
    assert.equal(graph.nodes.length, 2);

    const claimed = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "first" }], maxSteps: 5, wait: { seconds: 5n } });
    const a = claimed.steps[0]!;
    assert.deepEqual(a.config, { n: 1 });
    assert.equal(a.correlationId, `corr-${ns}`);
    const ext = await client.steps.extendLease({ workerId: "test", leases: [{ stepId: a.stepId, leaseToken: a.leaseToken }] });
    assert.equal(ext.extensions[0]?.result?.code, 0);
    await client.steps.completeStep({ stepId: a.stepId, leaseToken: a.leaseToken, result: toStruct({ big: 2 ** 53, half: 0.5 }) });
    const b = await waitFor("b to be claimable", async () => {
      const r = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "second" }], maxSteps: 1, wait: { seconds: 5n } });
      return r.steps[0];
    });
    assert.deepEqual(b.parentResults[0]?.result, { big: 2 ** 53, half: 0.5 });
    await client.steps.releaseStep({ stepId: b.stepId, leaseToken: b.leaseToken, reason: "test" });
    const b2 = await waitFor("b again", async () => {
      const r = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "second" }], maxSteps: 1, wait: { seconds: 5n } });
      return r.steps[0];
    });
    assert.equal(b2.attempt, 1, "a release does not count the attempt");
    const failed = await client.steps.batchFailSteps({ failures: [{ stepId: b2.stepId, leaseToken: b2.leaseToken, error: { message: "no", type: "test" }, nonRetryable: true }] });
    assert.equal(failed.outcomes[0]?.state, StepState.ERROR);
    const steps = await client.steps.listSteps({ taskId: task.id });
    assert.deepEqual(steps.steps.map((s) => s.state), [StepState.COMPLETE, StepState.ERROR]);
    const retried = await client.steps.retryStep({ id: b2.stepId, reason: "test" });
    assert.equal(retried.step?.state, StepState.ENQUEUED);
    await client.steps.resolveStep({ id: b2.stepId, result: toStruct({ by: "hand" }), reason: "test" });
    const done = await client.tasks.getTask({ id: task.id });
    assert.equal(done.task?.state, TaskState.COMPLETE);
    const step = await client.steps.getStep({ id: b2.stepId });
    assert.deepEqual(step.step?.result, { by: "hand" });

    const published = await client.events.publishEvent({ type: "test.published", taskId: task.id, payload: toStruct({ ok: true }) });
    assert.equal(published.event?.correlationId, `corr-${ns}`);
    const evs = await client.events.listEvents({ filter: { taskId: task.id } });
    assert.ok(evs.events.some((e) => e.type === "task.created"));
    assert.ok(evs.events.some((e) => e.type === "test.published"));
    const types = await client.events.listEventTypes({});
    assert.ok(types.eventTypes.some((t) => t.name === "task.created"));
    const seen: string[] = [];
    for await (const ev of subscribe(client, { filter: { taskId: task.id }, start: StartPosition.BEGINNING, untilTaskFinished: true })) {
      seen.push(ev.type);
    }
    // untilTaskFinished ends at the task's first finish, task.failed here.
    const types_ = evs.events.map((e) => e.type);
    assert.deepEqual(seen, types_.slice(0, types_.indexOf("task.failed") + 1));
    const handlers = await client.registry.listHandlers({ namespace: ns });
    assert.ok(handlers.handlers.length >= 2);
  });

  test("batch completion, step and task cancellation, task retry and resolve", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "x", handler: "work" }, { name: "y", handler: "work" }]));
    const t1 = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    const claims = await waitFor("two claims", async () => {
      const r = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "work" }], maxSteps: 2, wait: { seconds: 5n } });
      return r.steps.length === 2 ? r.steps : undefined;
    });
    const res = await client.steps.batchCompleteSteps({ completions: claims.map((c) => ({ stepId: c.stepId, leaseToken: c.leaseToken, result: toStruct({ step: c.stepName }) })) });
    assert.deepEqual(res.results.map((r) => r.code), [0, 0]);
    assert.equal((await client.tasks.getTask({ id: t1.id })).task?.state, TaskState.COMPLETE);

    const t2 = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    const steps = (await client.steps.listSteps({ taskId: t2.id })).steps;
    await client.steps.cancelStep({ id: steps[0]!.id, reason: "test" });
    await client.tasks.cancelTask({ id: t2.id, reason: "test" });
    assert.equal((await client.tasks.getTask({ id: t2.id })).task?.state, TaskState.CANCELLED);

    const t3 = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    const c3 = await waitFor("claims of t3", async () => {
      const r = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "work" }], maxSteps: 2, wait: { seconds: 5n } });
      return r.steps.length === 2 ? r.steps : undefined;
    });
    await client.steps.batchFailSteps({ failures: c3.map((c) => ({ stepId: c.stepId, leaseToken: c.leaseToken, error: { message: "broken" }, nonRetryable: true })) });
    await waitFor("t3 in error", async () => ((await client.tasks.getTask({ id: t3.id })).task?.state === TaskState.ERROR ? true : undefined));
    await client.tasks.retryTask({ id: t3.id, reason: "test" });
    await waitFor("t3 in progress again", async () => ((await client.tasks.getTask({ id: t3.id })).task?.state === TaskState.IN_PROGRESS ? true : undefined));
    const again = await waitFor("t3's steps again", async () => {
      const r = await client.steps.claimSteps({ workerId: "test", handlers: [{ namespace: ns, handler: "work" }], maxSteps: 2, wait: { seconds: 5n } });
      return r.steps.length === 2 ? r.steps : undefined;
    });
    await client.steps.batchFailSteps({ failures: again.map((c) => ({ stepId: c.stepId, leaseToken: c.leaseToken, error: { message: "still broken" }, nonRetryable: true })) });
    await waitFor("t3 in error again", async () => ((await client.tasks.getTask({ id: t3.id })).task?.state === TaskState.ERROR ? true : undefined));
    await client.tasks.resolveTask({ id: t3.id, reason: "test" });
    assert.equal((await client.tasks.getTask({ id: t3.id })).task?.state, TaskState.RESOLVED_MANUALLY);
  });
});

describe("typed errors", () => {
  test("InvalidArgument carries the field violations", async () => {
    const err = await rejectsWith(client.tasks.createTask({ namespace: "", name: "flow" }), TaskerError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.ok(err.fieldViolations.some((v) => v.field === "namespace"), JSON.stringify(err.fieldViolations));
    assert.ok(err instanceof ConnectError);
  });

  test("NotFound names the resource", async () => {
    const err = await rejectsWith(client.tasks.getTask({ id: "0190d3c4-0000-7000-8000-000000000000" }), TaskerError);
    assert.equal(err.code, Code.NotFound);
  });

  test("INVALID_STATE", async () => {
    const { claim } = await claimOne();
    const err = await rejectsWith(client.steps.retryStep({ id: claim.stepId }), InvalidStateError);
    assert.equal(err.code, Code.FailedPrecondition);
    assert.equal(err.reason, "INVALID_STATE");
    assert.equal(err.reasonMetadata.current_state, "STEP_STATE_IN_PROGRESS");
  });

  test("LEASE_LOST", async () => {
    const { claim } = await claimOne();
    const err = await rejectsWith(client.steps.completeStep({ stepId: claim.stepId, leaseToken: "not-the-token" }), LeaseLostError);
    assert.equal(err.code, Code.Aborted);
  });

  test("ALREADY_COMPLETED", async () => {
    const { claim } = await claimOne();
    await client.steps.completeStep({ stepId: claim.stepId, leaseToken: claim.leaseToken, result: toStruct({ v: 1 }) });
    await client.steps.completeStep({ stepId: claim.stepId, leaseToken: claim.leaseToken, result: toStruct({ v: 1 }) });
    const err = await rejectsWith(client.steps.completeStep({ stepId: claim.stepId, leaseToken: claim.leaseToken, result: toStruct({ v: 2 }) }), AlreadyCompletedError);
    assert.equal(err.code, Code.FailedPrecondition);
  });

  test("CANCELLED", async () => {
    const { task, claim } = await claimOne();
    await client.tasks.cancelTask({ id: task.id, reason: "test" });
    const err = await rejectsWith(client.steps.completeStep({ stepId: claim.stepId, leaseToken: claim.leaseToken }), CancelledError);
    assert.equal(err.code, Code.Aborted);
  });

  test("TIMED_OUT", async () => {
    const { claim } = await claimOne({ timeoutMs: 1_000 });
    // The execution timeout passes while the lease still runs; the heartbeat says so first.
    await waitFor("the attempt to time out", async () => {
      const r = await client.steps.extendLease({ workerId: "test", leases: [{ stepId: claim.stepId, leaseToken: claim.leaseToken }] });
      return r.extensions[0]?.result?.reason === "TIMED_OUT" ? true : undefined;
    });
    const err = await rejectsWith(client.steps.completeStep({ stepId: claim.stepId, leaseToken: claim.leaseToken }), TimedOutError);
    assert.equal(err.code, Code.Aborted);
  });

  test("LOG_TRUNCATED decodes from its ErrorInfo", () => {
    // Retention must delete events for the server to answer it, which a
    // test cannot cause quickly; the decoding is the same for every reason.
    const raw = new ConnectError("events before 10 were deleted", Code.OutOfRange, undefined, [
      { desc: ErrorInfoSchema, value: { reason: "LOG_TRUNCATED", domain: "tasker.v1", metadata: { oldest_sequence: "10" } } },
    ]);
    const err = toTaskerError(raw);
    assert.ok(err instanceof LogTruncatedError);
    assert.equal(err.code, Code.OutOfRange);
    assert.equal(err.reasonMetadata.oldest_sequence, "10");
  });

  describe("with tokens", () => {
    let auth: Server;
    before(async () => {
      auth = await startServer(["--auth", "token", "--rate-limit", "1", "--rate-burst", "2"]);
    });
    after(async () => auth?.stop());

    test("TOKEN_INVALID", async () => {
      const c = auth.client({ token: "tsk_not_a_token" });
      const err = await rejectsWith(c.registry.listNamespaces({}), TokenInvalidError);
      assert.equal(err.code, Code.Unauthenticated);
    });

    test("SCOPE_MISSING", async () => {
      const c = auth.client({ token: auth.token("tasks:read", "*") });
      const err = await rejectsWith(c.registry.registerTaskTemplate(template("demo", [{ name: "a", handler: "h" }])), ScopeMissingError);
      assert.equal(err.code, Code.PermissionDenied);
      assert.equal(err.reasonMetadata.scope, "templates:write");
    });

    test("NAMESPACE_DENIED", async () => {
      const c = auth.client({ token: auth.token("templates:write", "demo") });
      const err = await rejectsWith(c.registry.registerTaskTemplate(template("other", [{ name: "a", handler: "h" }])), NamespaceDeniedError);
      assert.equal(err.code, Code.PermissionDenied);
    });

    test("RATE_LIMITED with a retry delay", async () => {
      const c = auth.client({ token: auth.token("templates:read", "*") });
      const err = await waitFor("the rate limit", async () => {
        try {
          await c.registry.listNamespaces({});
          return undefined;
        } catch (e) {
          if (e instanceof RateLimitedError) {
            return e;
          }
          throw e;
        }
      });
      assert.equal(err.code, Code.ResourceExhausted);
      assert.ok(err.retryDelayMs !== undefined && err.retryDelayMs > 0, `retryDelayMs ${err.retryDelayMs}`);
    });
  });
});

describe("Struct helpers", () => {
  test("numbers travel as doubles; what JSON cannot carry is refused", () => {
    assert.deepEqual(toStruct({ a: 1, d: new Date(0), u: undefined, list: [1, undefined] }), { a: 1, d: "1970-01-01T00:00:00.000Z", list: [1, null] });
    assert.throws(() => toStruct({ n: Number.NaN }), /finite/);
    assert.throws(() => toStruct({ n: 1n }), /bigint/);
    assert.deepEqual(fromStruct(undefined), {});
  });
});
