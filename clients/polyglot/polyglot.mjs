// The TypeScript side of the polyglot test (clients/polyglot) and of
// `tasker bench --worker-cmd`: one program on @taskerhq/client
// (clients/typescript, built into its dist/), three modes, JSON lines on
// stdout.
//
//	node polyglot.mjs worker --addr A --id ID         serves polyglot/ts_mix
//	node polyglot.mjs subscribe --addr A TASK...      each task's events, until it finishes
//	node polyglot.mjs noop --addr A --namespace NS --handler H --concurrency N
//
// ts_mix returns {lang, step, value, parents}: value is the task's
// context.seed + the step's config.add + the parents' values, and parents
// maps each parent to the language and value it reported. With
// context.hold it first prints {"kind": "holding"} and waits for the
// step's signal, whose reason it prints as {"kind": "cancelled"}. Workers
// stop gracefully on SIGTERM.
import { parseArgs } from "node:util";
import { StartPosition, TaskerClient, Worker, subscribe } from "../typescript/dist/index.js";

// Flags default to the environment `tasker bench --worker-cmd` sets.
const env = process.env;
const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    addr: { type: "string", default: env.TASKER_ADDR ?? "127.0.0.1:50051" },
    token: { type: "string", default: env.TASKER_TOKEN },
    id: { type: "string", default: env.TASKER_BENCH_WORKER_ID ?? "polyglot-ts" },
    namespace: { type: "string", default: env.TASKER_BENCH_NAMESPACE ?? "polyglot" },
    handler: { type: "string", default: env.TASKER_BENCH_HANDLER ?? "noop" },
    concurrency: { type: "string", default: env.TASKER_BENCH_CONCURRENCY ?? "8" },
  },
});
const [mode, ...tasks] = positionals;

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

// Logs of the library go to stderr, warnings and errors only.
const quiet = {
  debug() {},
  info() {},
  warn: (msg, attrs) => process.stderr.write(JSON.stringify({ level: "WARN", msg, ...attrs }, (_, v) => (typeof v === "bigint" ? String(v) : v)) + "\n"),
  error: (msg, attrs) => process.stderr.write(JSON.stringify({ level: "ERROR", msg, ...attrs }, (_, v) => (typeof v === "bigint" ? String(v) : v)) + "\n"),
};

async function mix(step) {
  if (step.context.hold) {
    emit({ kind: "holding", lang: "typescript", task: step.taskId, step: step.name });
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 60_000);
      step.signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
    });
    if (step.signal.aborted) {
      const r = step.signal.reason;
      emit({ kind: "cancelled", lang: "typescript", task: step.taskId, step: step.name, reason: r?.reason || r?.name || String(r) });
      throw r;
    }
  }
  const parents = {};
  let value = step.context.seed + step.config.add;
  for (const name of step.parentNames()) {
    const p = await step.parent(name);
    parents[name] = { lang: p.lang, value: p.value };
    value += p.value;
  }
  return { lang: "typescript", step: step.name, value, parents };
}

async function serve(client, worker) {
  const stop = new AbortController();
  process.once("SIGINT", () => stop.abort());
  process.once("SIGTERM", () => stop.abort());
  emit({ kind: "started", lang: "typescript", worker: worker.id });
  await worker.run(stop.signal);
}

const client = new TaskerClient({ address: args.addr, token: args.token });
const concurrency = Number(args.concurrency);
switch (mode) {
  case "subscribe":
    for (const task of tasks) {
      for await (const ev of subscribe(client, { filter: { taskId: task }, start: StartPosition.BEGINNING, untilTaskFinished: true })) {
        emit({ kind: "event", lang: "typescript", task, sequence: Number(ev.sequence), type: ev.type, step: ev.stepId, payload: ev.payload ?? {} });
      }
      emit({ kind: "finished", lang: "typescript", task });
    }
    break;
  case "worker": {
    // Heartbeats every 200ms, so a cancellation reaches a handler quickly.
    const worker = new Worker(client, { id: args.id, concurrency, heartbeatIntervalMs: 200, shutdownTimeoutMs: 5000, logger: quiet });
    worker.register(args.namespace, "ts_mix", mix);
    await serve(client, worker);
    break;
  }
  case "noop": {
    const worker = new Worker(client, { id: args.id, concurrency, shutdownTimeoutMs: 5000, logger: quiet });
    worker.register(args.namespace, args.handler, () => ({ ok: true }));
    await serve(client, worker);
    break;
  }
  default:
    process.stderr.write(`usage: node polyglot.mjs worker|subscribe|noop [--addr A] ...; got ${mode}\n`);
    process.exit(2);
}
