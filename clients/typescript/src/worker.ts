import { hostname } from "node:os";
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { CORRELATION_HEADER, type TaskerClient } from "./client.js";
import { errorFromEntry, isTransient, toTaskerError, type TaskerError } from "./errors.js";
import { messageOf, StepFailure, truncate, withErrorType, nonRetryable } from "./failure.js";
import type { ClaimedStep, LeaseExtension } from "./gen/tasker/v1/step_pb.js";
import { StepState } from "./gen/tasker/v1/common_pb.js";
import { toStruct } from "./struct.js";

/**
 * A Handler runs one attempt of a step and returns its result, which the
 * step's children receive (undefined is an empty result). A thrown error
 * fails the attempt: retried with the step's backoff until its attempts run
 * out, unless nonRetryable, retryAfter or withErrorType say otherwise.
 *
 * step.signal aborts when the step's lease is lost (signal.reason is the
 * server's TaskerError: LeaseLostError, TimedOutError, CancelledError, or
 * Code.NotFound), or when shutdown stops waiting for the handler
 * (ShutdownError); the handler should return soon after, and its outcome is
 * dropped.
 */
export type Handler = (step: Step) => Promise<object | undefined | void> | object | undefined | void;

/** Where the worker logs; console-like, with structured attributes. */
export interface Logger {
  debug(msg: string, attrs?: Record<string, unknown>): void;
  info(msg: string, attrs?: Record<string, unknown>): void;
  warn(msg: string, attrs?: Record<string, unknown>): void;
  error(msg: string, attrs?: Record<string, unknown>): void;
}

/** Options of a Worker; unset values take the defaults. */
export interface WorkerOptions {
  /** Stable id of this process, 1 to 128 bytes, shown by ListHandlers. Default "<host>-<pid>". */
  id?: string;
  /** How many steps run at once. Default 10. */
  concurrency?: number;
  /** How long one ClaimSteps call waits on the server for work, in ms. Default 30000; at most 60000. */
  claimWaitMs?: number;
  /**
   * How often the leases of running steps are renewed, in ms. Default: a
   * third of the shortest lease held, at least 100, so two heartbeats may
   * fail before a lease runs out.
   */
  heartbeatIntervalMs?: number;
  /**
   * How long running handlers may finish once the worker is stopped, in
   * ms; then their signals abort with ShutdownError and their steps are
   * given back unrun. Default 30000.
   */
  shutdownTimeoutMs?: number;
  /** Default: JSON lines on stderr, info and above. */
  logger?: Logger;
}

/** The abort reason of a handler whose step was given back during shutdown. */
export class ShutdownError extends Error {
  override name = "ShutdownError";
  constructor() {
    super("tasker worker: shutdown timeout passed; step released");
  }
}

const defaults = { concurrency: 10, claimWaitMs: 30_000, shutdownTimeoutMs: 30_000 };
const maxClaimWaitMs = 60_000;
const claimSlackMs = 10_000;
const minHeartbeatMs = 100;
const maxWorkerIdBytes = 128;
const maxClaimSteps = 100;
const maxClaimHandlers = 100;
const maxLeasesPerExtend = 500;
const maxBatch = 100;
const reportTimeoutMs = 10_000;
const maxErrorMessageBytes = 16 << 10;
const maxErrorTypeBytes = 128;

/** backoff is capped exponential backoff with full jitter in [d/2, d]. */
function backoff(initialMs: number, maxMs: number, n: number): number {
  const d = Math.min(initialMs * 2 ** Math.max(n - 1, 0), maxMs);
  return d / 2 + Math.random() * (d / 2);
}

/** delay waits ms, or until signal aborts; it reports whether ms passed. */
function delay(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Notifier wakes everyone waiting when something changes; waiters re-check their condition. */
class Notifier {
  private waiters: (() => void)[] = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }
}

const jsonLogger: Logger = (() => {
  const write = (level: string, msg: string, attrs?: Record<string, unknown>) =>
    process.stderr.write(
      JSON.stringify({ time: new Date().toISOString(), level, msg, ...attrs }, (_k, v: unknown) =>
        v instanceof Error ? v.message : typeof v === "bigint" ? v.toString() : v,
      ) + "\n",
    );
  return {
    debug: () => {},
    info: (m, a) => write("INFO", m, a),
    warn: (m, a) => write("WARN", m, a),
    error: (m, a) => write("ERROR", m, a),
  };
})();

function tsDate(t: Timestamp | undefined): Date | undefined {
  return t ? timestampDate(t) : undefined;
}

function durationOf(ms: number) {
  const whole = Math.floor(ms);
  return { seconds: BigInt(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 };
}

interface ParentRef {
  name: string;
  stepId: string;
  result: JsonObject | undefined;
  omitted: boolean;
}

/**
 * Step is a claimed step handed to a Handler: what to do (config), for which
 * task (context), and what its parents produced (parent()).
 *
 * Documents arrive as JSON: every number is a double, so integers are exact
 * up to 2^53.
 */
export class Step {
  readonly id: string;
  readonly taskId: string;
  readonly namespace: string;
  readonly handler: string;
  /** The step's name within its task. */
  readonly name: string;
  readonly templateName: string;
  readonly templateVersion: string;
  /** The task's correlation id; the worker sends it with every call it makes for the step. */
  readonly correlationId: string;
  /** This attempt's number, starting at 1. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly priority: number;
  /** The step's static configuration from its template. */
  readonly config: JsonObject;
  /** The task's context. */
  readonly context: JsonObject;
  /** When the claim's lease ends unless renewed; the worker renews it while the handler runs. */
  readonly leaseExpiresAt: Date;
  /** When the attempt times out; undefined when the step has no execution timeout. */
  readonly executionDeadline: Date | undefined;
  /** Aborts when the lease is lost or shutdown gives the step back; see Handler. */
  readonly signal: AbortSignal;

  private readonly parents: ParentRef[];
  private readonly fetched = new Map<string, Promise<JsonObject>>();

  constructor(
    c: ClaimedStep,
    signal: AbortSignal,
    private readonly client: TaskerClient,
  ) {
    this.id = c.stepId;
    this.taskId = c.taskId;
    this.namespace = c.handler?.namespace ?? "";
    this.handler = c.handler?.handler ?? "";
    this.name = c.stepName;
    this.templateName = c.templateName;
    this.templateVersion = c.templateVersion;
    this.correlationId = c.correlationId;
    this.attempt = c.attempt;
    this.maxAttempts = c.maxAttempts;
    this.priority = c.priority;
    this.config = c.config ?? {};
    this.context = c.context ?? {};
    this.leaseExpiresAt = tsDate(c.leaseExpiresAt) ?? new Date();
    this.executionDeadline = tsDate(c.executionDeadline);
    this.signal = signal;
    this.parents = c.parentResults.map((p) => ({ name: p.stepName, stepId: p.stepId, result: p.result, omitted: p.omitted }));
  }

  /** The names of the step's parents, in the order the template declares them. */
  parentNames(): string[] {
    return this.parents.map((p) => p.name);
  }

  /**
   * The result of the parent step called name. A result too large to travel
   * with the claim is read with GetStep on first use and kept.
   */
  async parent(name: string): Promise<JsonObject> {
    const p = this.parents.find((x) => x.name === name);
    if (!p) {
      throw new Error(`tasker worker: step "${this.name}" has no parent "${name}" (parents: ${this.parentNames().join(", ")})`);
    }
    if (!p.omitted) {
      return p.result ?? {};
    }
    let got = this.fetched.get(name);
    if (!got) {
      got = this.client.steps
        .getStep({ id: p.stepId }, { headers: { [CORRELATION_HEADER]: this.correlationId }, signal: this.signal })
        .then((r) => r.step?.result ?? {});
      this.fetched.set(name, got);
      got.catch(() => this.fetched.delete(name));
    }
    return got;
  }
}

type State = "running" | "reporting" | "lost" | "released";

/** One claimed step in flight. */
interface Execution {
  step: Step;
  token: string;
  abort: AbortController;
  /** The lease's length as seen at the claim, for the default heartbeat interval. */
  leaseMs: number;
  state: State;
  /** When the lease ends, as last renewed (epoch ms). */
  expiresAt: number;
}

interface Queued<T> {
  entry: T;
  e: Execution;
  attempt: number;
  done: (err: TaskerError | undefined, outcome?: { state: StepState; availableAt?: Date }) => void;
}

interface Completion {
  stepId: string;
  leaseToken: string;
  result: JsonObject;
}

interface Failure {
  stepId: string;
  leaseToken: string;
  error: { message: string; type: string };
  nonRetryable: boolean;
  retryAfter?: { seconds: bigint; nanos: number };
}

/**
 * Worker claims steps of its registered handlers from a Tasker server, runs
 * them and reports their outcome, as the Go SDK (package worker) does:
 * long-poll ClaimSteps for the registered (namespace, handler) pairs within
 * the concurrency limit; the leases of running steps renewed in batched
 * ExtendLease calls; completions and failures ready together sent as one
 * BatchCompleteSteps or BatchFailSteps; a report the server cannot take now
 * retried while the lease runs; graceful shutdown that lets running steps
 * finish, then gives back the rest unrun.
 *
 *     const worker = new Worker(client, { concurrency: 4 });
 *     worker.register("demo", "demo_echo", async (step) => ({ echoed: step.config.message }));
 *     process.on("SIGTERM", () => worker.stop());
 *     await worker.run();
 */
export class Worker {
  readonly id: string;
  private readonly opts: Required<Omit<WorkerOptions, "heartbeatIntervalMs" | "id">> & { heartbeatIntervalMs?: number };
  private readonly log: Logger;
  private readonly handlers = new Map<string, { namespace: string; handler: string; fn: Handler }>();
  private started = false;
  private readonly stopping = new AbortController();
  private readonly running = new Set<Execution>();
  private readonly freed = new Notifier();
  private readonly releases = new Set<Promise<void>>();
  private completions: Queued<Completion>[] = [];
  private failures: Queued<Failure>[] = [];
  private flushScheduled = false;
  private hbTimer: NodeJS.Timeout | undefined;
  private hbDue = 0;
  private hbStopped = false;
  private renewing = false;

  constructor(
    private readonly client: TaskerClient,
    options: WorkerOptions = {},
  ) {
    this.id = options.id ?? `${hostname()}-${process.pid}`;
    this.opts = {
      concurrency: options.concurrency && options.concurrency > 0 ? options.concurrency : defaults.concurrency,
      claimWaitMs: Math.min(options.claimWaitMs && options.claimWaitMs > 0 ? options.claimWaitMs : defaults.claimWaitMs, maxClaimWaitMs),
      shutdownTimeoutMs: options.shutdownTimeoutMs && options.shutdownTimeoutMs > 0 ? options.shutdownTimeoutMs : defaults.shutdownTimeoutMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      logger: options.logger ?? jsonLogger,
    };
    this.log = this.opts.logger;
  }

  /**
   * register serves handler of namespace with fn. It throws for an empty
   * name, a handler registered twice, more than 100 handlers, or once run
   * has started.
   */
  register(namespace: string, handler: string, fn: Handler): this {
    if (!namespace || !handler) {
      throw new Error(`tasker worker: register: namespace and handler are required (got "${namespace}", "${handler}")`);
    }
    if (this.started) {
      throw new Error(`tasker worker: register ${namespace}/${handler}: the worker is already running`);
    }
    const key = `${namespace}\u0000${handler}`;
    if (this.handlers.has(key)) {
      throw new Error(`tasker worker: register ${namespace}/${handler}: already registered`);
    }
    if (this.handlers.size === maxClaimHandlers) {
      throw new Error(`tasker worker: register ${namespace}/${handler}: a worker serves at most ${maxClaimHandlers} handlers`);
    }
    this.handlers.set(key, { namespace, handler, fn });
    return this;
  }

  /** stop begins a graceful shutdown; the promise of run settles when it is over. */
  stop(): void {
    this.stopping.abort();
  }

  /** How many steps hold a slot now. */
  get inFlight(): number {
    return this.running.size;
  }

  /**
   * run claims and runs steps until stop() is called or signal aborts, then
   * shuts down gracefully: it stops claiming at once, lets running handlers
   * finish for up to shutdownTimeoutMs while their leases are still
   * renewed, then aborts the rest and gives their steps back unrun
   * (ReleaseStep; the attempt is not counted). It rejects when the worker
   * cannot run at all (no handler, a bad id, a claim the server refuses as
   * invalid).
   */
  async run(signal?: AbortSignal): Promise<void> {
    if (this.started) {
      throw new Error("tasker worker: run was already called");
    }
    const idBytes = Buffer.byteLength(this.id);
    if (idBytes === 0 || idBytes > maxWorkerIdBytes) {
      throw new Error(`tasker worker: the worker id must be 1 to ${maxWorkerIdBytes} bytes, got ${idBytes}`);
    }
    if (this.handlers.size === 0) {
      throw new Error("tasker worker: no handler registered");
    }
    this.started = true;
    if (signal) {
      if (signal.aborted) {
        this.stop();
      }
      signal.addEventListener("abort", () => this.stop(), { once: true });
    }
    this.log.info("worker started", { worker_id: this.id, handlers: this.handlers.size, concurrency: this.opts.concurrency });
    let failed: unknown;
    try {
      await this.claimLoop();
    } catch (err) {
      failed = err;
    }
    await this.shutdown();
    this.hbStopped = true;
    clearTimeout(this.hbTimer);
    this.log.info("worker stopped", { worker_id: this.id });
    if (failed !== undefined) {
      throw failed;
    }
  }

  /**
   * waitFreed waits until a running step finishes, ms pass, or signal
   * aborts, and leaves no timer or abort listener behind: the claim loop
   * waits like this once per full round, for as long as the worker runs.
   */
  private async waitFreed(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) {
      return;
    }
    const done = new AbortController();
    const onAbort = () => done.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.race([this.freed.wait(), delay(ms, done.signal)]);
    } finally {
      signal.removeEventListener("abort", onAbort);
      done.abort();
    }
  }

  private async claimLoop(): Promise<void> {
    const stop = this.stopping.signal;
    const refs = [...this.handlers.values()].map((h) => ({ namespace: h.namespace, handler: h.handler }));
    let failures = 0;
    while (!stop.aborted) {
      const free = this.opts.concurrency - this.running.size;
      if (free <= 0) {
        await this.waitFreed(3_600_000, stop);
        continue;
      }
      const asked = Date.now();
      let claimed: ClaimedStep[];
      try {
        const res = await this.client.steps.claimSteps(
          { workerId: this.id, handlers: refs, maxSteps: Math.min(free, maxClaimSteps), wait: durationOf(this.opts.claimWaitMs) },
          { signal: stop, timeoutMs: this.opts.claimWaitMs + claimSlackMs },
        );
        claimed = res.steps;
      } catch (err) {
        if (stop.aborted) {
          return;
        }
        const te = toTaskerError(err);
        if (te.code === Code.InvalidArgument) {
          throw new Error(`tasker worker: the server refused the claim request: ${te.message}`, { cause: te });
        }
        failures++;
        const wait = backoff(100, 5_000, failures);
        this.log.warn("claim failed; retrying", { worker_id: this.id, error: te.message, retry_in_ms: Math.round(wait) });
        await delay(wait, stop);
        continue;
      }
      if (claimed.length === 0 && Date.now() - asked < this.opts.claimWaitMs / 2) {
        // A long-poll that ends early with nothing comes from a server
        // that is shutting down; asking again at once would spin.
        failures++;
        await delay(backoff(100, 5_000, failures), stop);
        continue;
      }
      failures = 0;
      for (const c of claimed) {
        this.launch(c);
      }
    }
  }

  private launch(c: ClaimedStep): void {
    const abort = new AbortController();
    const step = new Step(c, abort.signal, this.client);
    const h = this.handlers.get(`${step.namespace}\u0000${step.handler}`);
    if (!h || this.stopping.signal.aborted) {
      // A claim that raced with shutdown, or a handler the server should
      // not have sent: give it back without counting the attempt.
      const reason = h ? "worker shutting down" : "worker does not serve this handler";
      const p = this.release(step, c.leaseToken, () => step.leaseExpiresAt.getTime(), reason).finally(() => this.releases.delete(p));
      this.releases.add(p);
      return;
    }
    const e: Execution = {
      step,
      token: c.leaseToken,
      abort,
      leaseMs: Math.max(step.leaseExpiresAt.getTime() - Date.now(), 0),
      state: "running",
      expiresAt: step.leaseExpiresAt.getTime(),
    };
    this.running.add(e);
    this.scheduleHeartbeat();
    this.log.debug("step claimed", this.attrs(e));
    void this.execute(e, h.fn);
  }

  private attrs(e: Execution): Record<string, unknown> {
    const s = e.step;
    return { worker_id: this.id, step_id: s.id, task_id: s.taskId, correlation_id: s.correlationId, namespace: s.namespace, handler: s.handler, step: s.name, attempt: s.attempt };
  }

  private async execute(e: Execution, fn: Handler): Promise<void> {
    const start = Date.now();
    let result: unknown;
    let error: unknown;
    let threw = false;
    try {
      result = await fn(e.step);
    } catch (err) {
      threw = true;
      error = err;
    }
    const st = e.state;
    if (st === "running") {
      e.state = "reporting";
    }
    if (st === "lost") {
      this.log.info("handler returned after its lease was lost; result dropped", { ...this.attrs(e), cause: String(e.abort.signal.reason) });
      this.done(e);
      return;
    }
    if (st === "released") {
      this.log.info("handler returned after its step was released; result dropped", this.attrs(e));
      return;
    }
    const took_ms = Date.now() - start;
    try {
      if (threw) {
        await this.fail(e, error, took_ms);
      } else {
        let doc: JsonObject;
        try {
          doc = toStruct((result ?? undefined) as object | undefined);
        } catch (err) {
          await this.fail(e, nonRetryable(withErrorType(new Error(`result: ${messageOf(err)}`), "invalid_result")), took_ms);
          return;
        }
        await this.complete(e, doc, took_ms);
      }
    } finally {
      this.done(e);
    }
  }

  private done(e: Execution): void {
    this.running.delete(e);
    this.freed.notify();
  }

  private async complete(e: Execution, result: JsonObject, took_ms: number): Promise<void> {
    const err = await new Promise<TaskerError | undefined>((done) => {
      this.completions.push({ entry: { stepId: e.step.id, leaseToken: e.token, result }, e, attempt: 0, done });
      this.scheduleFlush();
    });
    if (err?.code === Code.InvalidArgument) {
      await this.fail(e, nonRetryable(withErrorType(new Error(`result: ${err.rawMessage}`), "invalid_result")), took_ms);
      return;
    }
    if (err) {
      this.refused(e, "CompleteStep", err);
      return;
    }
    this.log.info("step completed", { ...this.attrs(e), took_ms });
  }

  private async fail(e: Execution, handlerErr: unknown, took_ms: number): Promise<void> {
    const f = handlerErr instanceof StepFailure ? handlerErr : undefined;
    const entry: Failure = {
      stepId: e.step.id,
      leaseToken: e.token,
      error: { message: truncate(messageOf(handlerErr), maxErrorMessageBytes), type: truncate(f?.type ?? "", maxErrorTypeBytes) },
      nonRetryable: f?.nonRetryable ?? false,
    };
    if (f && f.retryAfterMs > 0) {
      entry.retryAfter = durationOf(f.retryAfterMs);
    }
    let outcome: { state: StepState; availableAt?: Date } | undefined;
    const err = await new Promise<TaskerError | undefined>((done) => {
      this.failures.push({
        entry,
        e,
        attempt: 0,
        done: (err, o) => {
          outcome = o;
          done(err);
        },
      });
      this.scheduleFlush();
    });
    if (err) {
      this.refused(e, "FailStep", err);
      return;
    }
    const attrs = { ...this.attrs(e), took_ms, error: messageOf(handlerErr), error_type: entry.error.type };
    if (outcome?.state === StepState.WAITING_FOR_RETRY) {
      this.log.info("step failed; retry scheduled", { ...attrs, retry_at: outcome.availableAt?.toISOString() });
    } else {
      this.log.warn("step failed for good", attrs);
    }
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Reports that become ready in the same turn of the event loop go
      // out together.
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    while (this.completions.length > 0) {
      void this.sendCompletions(this.completions.splice(0, maxBatch));
    }
    while (this.failures.length > 0) {
      void this.sendFailures(this.failures.splice(0, maxBatch));
    }
  }

  /** callOptions sends the batch's correlation id when every entry shares one. */
  private callOptions(batch: Queued<unknown>[]) {
    const ids = new Set(batch.map((q) => q.e.step.correlationId));
    const [id] = ids;
    return { timeoutMs: reportTimeoutMs, headers: ids.size === 1 && id ? { [CORRELATION_HEADER]: id } : {} };
  }

  private async sendCompletions(batch: Queued<Completion>[]): Promise<void> {
    const [only] = batch;
    if (batch.length === 1 && only) {
      try {
        await this.client.steps.completeStep(only.entry, this.callOptions(batch));
        this.settle(only, undefined, () => this.completions.push(only));
      } catch (err) {
        this.settle(only, toTaskerError(err), () => this.completions.push(only));
      }
      return;
    }
    try {
      const res = await this.client.steps.batchCompleteSteps({ completions: batch.map((q) => q.entry) }, this.callOptions(batch));
      batch.forEach((q, i) => this.settle(q, res.results.length === batch.length ? errorFromEntry(res.results[i]) : mismatch(), () => this.completions.push(q)));
    } catch (err) {
      const te = toTaskerError(err);
      batch.forEach((q) => this.settle(q, te, () => this.completions.push(q)));
    }
  }

  private async sendFailures(batch: Queued<Failure>[]): Promise<void> {
    const [only] = batch;
    if (batch.length === 1 && only) {
      try {
        const res = await this.client.steps.failStep(only.entry, this.callOptions(batch));
        this.settle(only, undefined, () => this.failures.push(only), { state: res.state, availableAt: tsDate(res.availableAt) });
      } catch (err) {
        this.settle(only, toTaskerError(err), () => this.failures.push(only));
      }
      return;
    }
    try {
      const res = await this.client.steps.batchFailSteps({ failures: batch.map((q) => q.entry) }, this.callOptions(batch));
      batch.forEach((q, i) => {
        const o = res.outcomes[i];
        const err = res.outcomes.length === batch.length ? errorFromEntry(o?.result) : mismatch();
        this.settle(q, err, () => this.failures.push(q), o && { state: o.state, availableAt: tsDate(o.availableAt) });
      });
    } catch (err) {
      const te = toTaskerError(err);
      batch.forEach((q) => this.settle(q, te, () => this.failures.push(q)));
    }
  }

  /**
   * settle ends a report, or queues it again after a backoff when the
   * server could not take it now and the lease (as last renewed) still
   * runs then: a server restart or a database outage of a few seconds must
   * not make a finished step run again. Repeating is safe: a report that
   * took effect succeeds again with the same lease and content.
   */
  private settle<T>(q: Queued<T>, err: TaskerError | undefined, requeue: () => void, outcome?: { state: StepState; availableAt?: Date }): void {
    if (err && isTransient(err)) {
      q.attempt++;
      const wait = backoff(100, 2_000, q.attempt);
      if (Date.now() + wait < q.e.expiresAt) {
        this.log.warn("report failed; retrying", { ...this.attrs(q.e), report_attempt: q.attempt, retry_in_ms: Math.round(wait), error: err.message });
        setTimeout(() => {
          requeue();
          this.scheduleFlush();
        }, wait);
        return;
      }
    }
    q.done(err, outcome);
  }

  private refused(e: Execution, method: string, err: TaskerError): void {
    const attrs = { ...this.attrs(e), method, code: Code[err.code], reason: err.reason, message: err.rawMessage };
    if (err.code === Code.Aborted || err.code === Code.NotFound) {
      this.log.info("report refused; result dropped", attrs);
    } else if (err.code === Code.FailedPrecondition) {
      this.log.warn("report refused; result dropped", attrs);
    } else {
      this.log.error("report failed; the step runs again after its lease expires", attrs);
    }
  }

  /** release gives a claimed step back unrun, retrying while its lease runs. */
  private async release(step: Step, token: string, leaseEnd: () => number, reason: string): Promise<void> {
    const opts = { timeoutMs: reportTimeoutMs, headers: { [CORRELATION_HEADER]: step.correlationId } };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.steps.releaseStep({ stepId: step.id, leaseToken: token, reason }, opts);
        this.log.info("step released", { worker_id: this.id, step_id: step.id, reason });
        return;
      } catch (err) {
        const te = toTaskerError(err);
        const wait = backoff(100, 2_000, attempt);
        if (!isTransient(te) || Date.now() + wait >= leaseEnd()) {
          this.log.info("release refused", { worker_id: this.id, step_id: step.id, code: Code[te.code], message: te.rawMessage });
          return;
        }
        await delay(wait);
      }
    }
  }

  private async shutdown(): Promise<void> {
    const deadline = Date.now() + this.opts.shutdownTimeoutMs;
    if (this.running.size > 0) {
      this.log.info("shutting down; waiting for running steps", { worker_id: this.id, running: this.running.size, timeout_ms: this.opts.shutdownTimeoutMs });
    }
    while (this.running.size > 0 && Date.now() < deadline) {
      const timeout = new AbortController();
      await this.waitFreed(deadline - Date.now(), timeout.signal);
      timeout.abort();
    }
    // Take the steps whose handlers still run; those reporting finish their report.
    const abandoned = [...this.running].filter((e) => e.state === "running");
    for (const e of abandoned) {
      e.state = "released";
    }
    await Promise.all(
      abandoned.map(async (e) => {
        e.abort.abort(new ShutdownError());
        await this.release(e.step, e.token, () => e.expiresAt, "worker shut down before the step finished");
        this.done(e);
      }),
    );
    await Promise.all([...this.releases]);
    // Reports in progress end within their retries, bounded by the lease.
    // Handlers whose lease was lost are not waited for.
    while ([...this.running].some((e) => e.state === "reporting")) {
      await this.freed.wait();
    }
  }

  /** interval is how long the heartbeat may sleep given the leases held now; undefined when none is. */
  private interval(): number | undefined {
    let shortest: number | undefined;
    for (const e of this.running) {
      if (e.state === "running" || e.state === "reporting") {
        shortest = shortest === undefined ? e.leaseMs : Math.min(shortest, e.leaseMs);
      }
    }
    if (shortest === undefined) {
      return undefined;
    }
    return this.opts.heartbeatIntervalMs ?? Math.max(shortest / 3, minHeartbeatMs);
  }

  /** scheduleHeartbeat makes sure a renewal is due no later than the interval of the shortest lease held. */
  private scheduleHeartbeat(): void {
    const iv = this.interval();
    if (iv === undefined || this.hbStopped) {
      return;
    }
    const due = Date.now() + iv;
    if (this.hbTimer !== undefined && this.hbDue <= due) {
      return;
    }
    clearTimeout(this.hbTimer);
    this.hbDue = due;
    this.hbTimer = setTimeout(() => void this.beat(), iv);
  }

  private async beat(): Promise<void> {
    this.hbTimer = undefined;
    if (this.renewing || this.hbStopped) {
      return;
    }
    this.renewing = true;
    try {
      await this.renew();
    } finally {
      this.renewing = false;
    }
    this.scheduleHeartbeat();
  }

  /** renew extends every lease held, at most 500 per call; a failed call is retried at the next beat. */
  private async renew(): Promise<void> {
    const held = [...this.running].filter((e) => e.state === "running" || e.state === "reporting");
    const iv = this.interval() ?? 1_000;
    for (let i = 0; i < held.length; i += maxLeasesPerExtend) {
      const batch = held.slice(i, i + maxLeasesPerExtend);
      let exts: LeaseExtension[];
      try {
        const res = await this.client.steps.extendLease(
          { workerId: this.id, leases: batch.map((e) => ({ stepId: e.step.id, leaseToken: e.token })) },
          { timeoutMs: Math.max(2 * iv, 1_000) },
        );
        exts = res.extensions;
      } catch (err) {
        this.log.warn("heartbeat failed; retrying at the next beat", { worker_id: this.id, leases: batch.length, error: messageOf(err) });
        continue;
      }
      if (exts.length !== batch.length) {
        this.log.error("heartbeat answered the wrong number of leases", { worker_id: this.id, sent: batch.length, answered: exts.length });
        continue;
      }
      batch.forEach((e, j) => this.extended(e, exts[j]));
    }
  }

  /**
   * extended applies one lease's renewal. A definitive refusal (Aborted,
   * NotFound, or FailedPrecondition for a step this lease already
   * completed) aborts a handler still running with the server's error.
   */
  private extended(e: Execution, ext: LeaseExtension | undefined): void {
    const err = errorFromEntry(ext?.result);
    if (!err) {
      const at = tsDate(ext?.leaseExpiresAt);
      if (at) {
        e.expiresAt = at.getTime();
      }
      return;
    }
    if (e.state !== "running") {
      return;
    }
    if (err.code === Code.Aborted || err.code === Code.NotFound || err.code === Code.FailedPrecondition) {
      e.state = "lost";
      e.abort.abort(err);
      this.log.info("lease lost; handler aborted and its result will be dropped", { ...this.attrs(e), code: Code[err.code], reason: err.reason, message: err.rawMessage });
      return;
    }
    this.log.warn("lease not renewed; retrying at the next beat", { ...this.attrs(e), code: Code[err.code], message: err.rawMessage });
  }
}

function mismatch(): TaskerError {
  return toTaskerError(new ConnectError("the server answered the wrong number of entries", Code.Internal));
}
