// Starts a real `tasker serve` for a test file: the binary from
// TASKER_BIN (make test-ts builds it) or built once into a temporary
// directory, free ports, a temporary SQLite file; ready once gRPC health
// answers SERVING.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TaskerClient, type ClientOptions } from "../src/index.js";

const repo = resolve(fileURLToPath(import.meta.url), "../../../../..");

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

let built: string | undefined;
function binary(dir: string): string {
  if (process.env.TASKER_BIN) {
    return process.env.TASKER_BIN;
  }
  if (!built) {
    built = join(dir, "tasker");
    execFileSync("go", ["build", "-o", built, "./cmd/tasker"], { cwd: repo, stdio: "inherit" });
  }
  return built;
}

/** waitFor polls check until it returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) {
        return v;
      }
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Server {
  address: string;
  dir: string;
  database: string;
  bin: string;
  client(opts?: Partial<ClientOptions>): TaskerClient;
  /** token creates an API token in the server's database. */
  token(scopes: string, namespaces: string): string;
  stop(): Promise<void>;
}

/** startServer runs `tasker serve` with extra flags and waits for it to serve. */
export async function startServer(extra: string[] = [], probeOptions: Partial<ClientOptions> = {}): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), "tasker-ts-"));
  const bin = binary(dir);
  const database = join(dir, "tasker.db");
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  let output = "";
  const child: ChildProcess = spawn(bin, ["serve", "--database", database, "--grpc-addr", address, "--admin-addr", "", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TASKER_TEMPLATES: "" },
  });
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  let exited = false;
  child.once("exit", () => (exited = true));
  const clients: TaskerClient[] = [];
  const probe = new TaskerClient({ address, ...probeOptions });
  try {
    await waitFor("the server to serve", async () => {
      if (exited) {
        throw new Error(`tasker serve exited:\n${output}`);
      }
      return (await probe.checkHealth("", { timeoutMs: 1_000 })) ? true : undefined;
    }, 30_000);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    address,
    dir,
    database,
    bin,
    client(opts) {
      const c = new TaskerClient({ address, ...opts });
      clients.push(c);
      return c;
    },
    token(scopes, namespaces) {
      return execFileSync(bin, ["token", "create", "--database", database, "--name", `t${Math.random().toString(36).slice(2)}`, "--scopes", scopes, "--namespaces", namespaces], {
        encoding: "utf8",
      }).trim().split("\n").pop()!.trim();
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;
/** uniqueNamespace names a namespace no other test of the file uses. */
export function uniqueNamespace(prefix = "ts"): string {
  seq++;
  return `${prefix}${process.pid}n${seq}`;
}

/** simpleTemplate is a template of one namespace whose steps use handler names given. */
export function template(namespace: string, steps: { name: string; handler: string; dependsOn?: string[]; config?: Record<string, unknown>; leaseMs?: number; timeoutMs?: number; maxAttempts?: number }[], name = "flow") {
  const dur = (ms: number) => ({ seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
  return {
    template: {
      namespace,
      name,
      version: "1.0.0",
      steps: steps.map((s) => ({
        name: s.name,
        handler: s.handler,
        dependsOn: s.dependsOn ?? [],
        config: (s.config ?? {}) as never,
        leaseDuration: s.leaseMs ? dur(s.leaseMs) : undefined,
        executionTimeout: s.timeoutMs ? dur(s.timeoutMs) : undefined,
        retryPolicy: s.maxAttempts ? { maxAttempts: s.maxAttempts, initialBackoff: dur(100), maxBackoff: dur(1000) } : undefined,
      })),
    },
  };
}
