import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { TaskerError } from "../src/index.js";
import { startServer, type Server } from "./harness.js";

// A CA, a server certificate for 127.0.0.1 and a client certificate, made
// with openssl for this run.
const dir = mkdtempSync(join(tmpdir(), "tasker-ts-tls-"));
const p = (name: string) => join(dir, name);
function openssl(...args: string[]) {
  execFileSync("openssl", args, { stdio: "pipe" });
}
function makeCerts() {
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=test-ca", "-keyout", p("ca.key"), "-out", p("ca.pem"));
  for (const [name, ext] of [
    ["server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    writeFileSync(p(`${name}.ext`), ext + "\n");
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${name}`, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`));
    openssl("x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "1", "-extfile", p(`${name}.ext`), "-out", p(`${name}.pem`));
  }
}

let server: Server;
before(async () => {
  makeCerts();
  server = await startServer(["--tls-cert", p("server.pem"), "--tls-key", p("server.key"), "--tls-client-ca", p("ca.pem")], {
    tls: { ca: { path: p("ca.pem") }, cert: { path: p("client.pem") }, key: { path: p("client.key") } },
  });
});
after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("mutual TLS with a CA, a client certificate and its key", async () => {
  const c = server.client({ tls: { ca: { path: p("ca.pem") }, cert: { path: p("client.pem") }, key: { path: p("client.key") } } });
  assert.equal(await c.checkHealth(), true);
  await c.registry.listNamespaces({});
});

test("without the client certificate the server refuses the connection", async () => {
  const c = server.client({ tls: { ca: { path: p("ca.pem") } } });
  await assert.rejects(c.registry.listNamespaces({}, { timeoutMs: 5_000 }), (err) => err instanceof TaskerError);
});
