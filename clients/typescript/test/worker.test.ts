import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect, createServer, type Server as NetServer, type Socket } from "node:net";
import {
  CancelledError,
  LeaseLostError,
  ShutdownError,
  StartPosition,
  StepState,
  TaskState,
  Worker,
  nonRetryable,
  retryAfter,
  subscribe,
  withErrorType,
  type Logger,
  type Step,
  type TaskerClient,
} from "../src/index.js";
import { freePort, startServer, template, uniqueNamespace, waitFor, type Server } from "./harness.js";

let server: Server;
let client: TaskerClient;
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

before(async () => {
  server = await startServer();
  client = server.client();
});
after(async () => server?.stop());

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function aborted(step: Step): Promise<unknown> {
  return new Promise((resolve) => {
    if (step.signal.aborted) {
      resolve(step.signal.reason);
    }
    step.signal.addEventListener("abort", () => resolve(step.signal.reason), { once: true });
  });
}

async function taskState(id: string, want: TaskState, timeoutMs = 20_000) {
  return waitFor(`task ${id} in ${TaskState[want]}`, async () => {
    const t = (await client.tasks.getTask({ id })).task;
    return t?.state === want ? t : undefined;
  }, timeoutMs);
}

describe("Worker", () => {
  test("runs a diamond with parents' results, batching reports", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(
      template(ns, [
        { name: "a", handler: "echo", config: { n: 1 } },
        { name: "b", handler: "echo", dependsOn: ["a"], config: { n: 2 } },
        { name: "c", handler: "echo", dependsOn: ["a"], config: { n: 3 } },
        { name: "d", handler: "echo", dependsOn: ["b", "c"], config: { n: 4 } },
      ]),
    );
    const methods: string[] = [];
    const counting = server.client({ interceptors: [(next) => (req) => (methods.push(req.method.name), next(req))] });
    const w = new Worker(counting, { id: `w-${ns}`, concurrency: 8, claimWaitMs: 1_000, logger: quiet });
    w.register(ns, "echo", async (step) => {
      const parents: Record<string, unknown> = {};
      for (const p of step.parentNames()) {
        parents[p] = await step.parent(p);
      }
      return { n: step.config.n, sum: Object.values(parents).reduce((acc: number, r) => acc + ((r as { sum: number }).sum ?? 0), step.config.n as number), parents: step.parentNames() };
    });
    const running = w.run();
    const ids = await Promise.all(Array.from({ length: 10 }, async () => (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!.id));
    for (const id of ids) {
      await taskState(id, TaskState.COMPLETE);
      const steps = (await client.steps.listSteps({ taskId: id, view: 2 })).steps;
      const d = steps.find((s) => s.name === "d")!;
      // a=1, b=1+2, c=1+3, d=3+4+4
      assert.deepEqual(d.result, { n: 4, sum: 11, parents: ["b", "c"] });
    }
    w.stop();
    await running;
    // Steps that finish in the same turn of the event loop are reported in one call.
    assert.ok(methods.includes("BatchCompleteSteps"), `calls: ${[...new Set(methods)].join(", ")}`);
  });

  test("a full worker waits for a free slot without piling up abort listeners", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "a", handler: "one" }]));
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    const w = new Worker(client, { id: `w-${ns}`, concurrency: 1, claimWaitMs: 1_000, logger: quiet });
    w.register(ns, "one", async () => ({ ok: true }));
    const running = w.run();
    // At concurrency 1 the claim loop waits for a free slot once per step:
    // 30 steps are well past Node's 10-listener warning if waits leak.
    const ids = await Promise.all(Array.from({ length: 30 }, async () => (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!.id));
    for (const id of ids) {
      await taskState(id, TaskState.COMPLETE);
    }
    w.stop();
    await running;
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    process.off("warning", onWarning);
    assert.deepEqual(warnings.filter((m) => m.startsWith("MaxListenersExceededWarning")), []);
  });

  test("retries, honours retry_after, and stops on a non-retryable failure", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(
      template(ns, [
        { name: "flaky", handler: "flaky", maxAttempts: 3 },
        { name: "broken", handler: "broken", maxAttempts: 3 },
      ]),
    );
    const w = new Worker(client, { id: `w-${ns}`, claimWaitMs: 1_000, logger: quiet });
    w.register(ns, "flaky", (step) => {
      if (step.attempt === 1) {
        throw withErrorType(retryAfter(new Error("upstream busy"), 200), "busy");
      }
      return { attempt: step.attempt };
    });
    w.register(ns, "broken", () => {
      throw nonRetryable(new Error("bad input"));
    });
    const running = w.run();
    const task = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    await taskState(task.id, TaskState.ERROR);
    w.stop();
    await running;
    const steps = (await client.steps.listSteps({ taskId: task.id, view: 2 })).steps;
    const flaky = steps.find((s) => s.name === "flaky")!;
    const broken = steps.find((s) => s.name === "broken")!;
    assert.equal(flaky.state, StepState.COMPLETE);
    assert.equal(flaky.attempts, 2);
    assert.equal(flaky.lastError?.type, "busy");
    assert.deepEqual(flaky.result, { attempt: 2 });
    assert.equal(broken.state, StepState.ERROR);
    assert.equal(broken.attempts, 1);
    assert.equal(broken.lastError?.message, "bad input");
  });

  test("a lost lease aborts the handler with LeaseLostError", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "slow", handler: "slow", leaseMs: 1_000, maxAttempts: 3 }]));
    // Heartbeats slower than the lease: the first one finds it lost.
    const w = new Worker(client, { id: `w-${ns}`, claimWaitMs: 1_000, heartbeatIntervalMs: 2_500, logger: quiet });
    const reason = deferred<unknown>();
    w.register(ns, "slow", async (step) => {
      if (step.attempt === 1) {
        reason.resolve(await aborted(step));
        throw step.signal.reason;
      }
      return { attempt: step.attempt };
    });
    const running = w.run();
    const task = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    const why = await reason.promise;
    assert.ok(why instanceof LeaseLostError, String(why));
    assert.equal(why.reason, "LEASE_LOST");
    await taskState(task.id, TaskState.COMPLETE);
    w.stop();
    await running;
  });

  test("cancelling the task aborts the handler with CancelledError", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "wait", handler: "wait", leaseMs: 1_500 }]));
    const w = new Worker(client, { id: `w-${ns}`, claimWaitMs: 1_000, logger: quiet });
    const started = deferred<Step>();
    const reason = deferred<unknown>();
    w.register(ns, "wait", async (step) => {
      started.resolve(step);
      reason.resolve(await aborted(step));
      return { ignored: true };
    });
    const running = w.run();
    const task = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    await started.promise;
    await client.tasks.cancelTask({ id: task.id, reason: "test" });
    const why = await reason.promise;
    assert.ok(why instanceof CancelledError, String(why));
    await waitFor("the slot to free", () => (w.inFlight === 0 ? true : undefined));
    w.stop();
    await running;
    assert.equal((await client.tasks.getTask({ id: task.id })).task?.state, TaskState.CANCELLED);
  });

  test("shutdown lets a running step finish", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "s", handler: "s" }]));
    const w = new Worker(client, { id: `w-${ns}`, claimWaitMs: 1_000, shutdownTimeoutMs: 20_000, logger: quiet });
    const started = deferred();
    const finish = deferred();
    w.register(ns, "s", async () => {
      started.resolve();
      await finish.promise;
      return { finished: true };
    });
    const running = w.run();
    const task = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    await started.promise;
    w.stop();
    finish.resolve();
    await running;
    assert.equal((await client.tasks.getTask({ id: task.id })).task?.state, TaskState.COMPLETE);
  });

  test("shutdown gives back a step that does not finish in time", async () => {
    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "s", handler: "s" }]));
    const w = new Worker(client, { id: `w-${ns}`, claimWaitMs: 1_000, shutdownTimeoutMs: 200, logger: quiet });
    const started = deferred();
    const reason = deferred<unknown>();
    w.register(ns, "s", async (step) => {
      started.resolve();
      reason.resolve(await aborted(step));
      return {};
    });
    const running = w.run();
    const task = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    await started.promise;
    w.stop();
    await running;
    assert.ok((await reason.promise) instanceof ShutdownError);
    const [step] = (await client.steps.listSteps({ taskId: task.id })).steps;
    assert.equal(step?.state, StepState.ENQUEUED);
    assert.equal(step?.attempts, 0, "a released attempt is not counted");
  });
});

describe("subscribe", () => {
  test("resumes after a disconnect without missing or repeating events", async () => {
    // A TCP proxy the test can cut, between the subscriber and the server.
    const [host, port] = server.address.split(":") as [string, string];
    const sockets = new Set<Socket>();
    const proxy: NetServer = createServer((down) => {
      const up = connect(Number(port), host);
      sockets.add(down).add(up);
      down.pipe(up).pipe(down);
      const close = () => (down.destroy(), up.destroy());
      down.on("error", close).on("close", close);
      up.on("error", close).on("close", close);
    });
    const proxyPort = await freePort();
    await new Promise<void>((r) => proxy.listen(proxyPort, "127.0.0.1", r));
    const viaProxy = server.client({ address: `127.0.0.1:${proxyPort}` });

    const ns = uniqueNamespace();
    await client.registry.registerTaskTemplate(template(ns, [{ name: "s", handler: "s" }]));
    const task = (await client.tasks.createTask({ namespace: ns, name: "flow" })).task!;
    const ac = new AbortController();
    const seen: bigint[] = [];
    let reconnects = 0;
    const published = 6;
    try {
    const consumer = (async () => {
      for await (const ev of subscribe(viaProxy, { filter: { taskId: task.id, types: ["test.tick"] }, start: StartPosition.BEGINNING, signal: ac.signal, onReconnect: () => reconnects++ })) {
        seen.push(ev.sequence);
        if (seen.length === published) {
          ac.abort();
        }
      }
    })();
    for (let i = 0; i < published / 2; i++) {
      await client.events.publishEvent({ type: "test.tick", taskId: task.id });
    }
    await waitFor("the first events", () => (seen.length === published / 2 ? true : undefined));
    sockets.forEach((s) => s.destroy());
    for (let i = 0; i < published / 2; i++) {
      await client.events.publishEvent({ type: "test.tick", taskId: task.id });
    }
    await consumer;
    } finally {
      ac.abort();
      sockets.forEach((s) => s.destroy());
      proxy.close();
    }
    assert.ok(reconnects >= 1, "the stream was cut");
    const all = (await client.events.listEvents({ filter: { taskId: task.id, types: ["test.tick"] } })).events.map((e) => e.sequence);
    assert.deepEqual(seen, all);
  });
});
