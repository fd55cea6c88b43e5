// An example Tasker worker built on @taskerhq/client. It serves every
// handler the templates in examples/templates use, as examples/worker does
// with the Go SDK: demo_echo and demo_sleep in the demo namespace, and
// fetch_cart, fetch_products, validate_products, create_order and
// publish_event in the ecommerce namespace.
//
//	go run ./cmd/tasker serve --templates examples/templates
//	(cd clients/typescript && npm ci && npm run build)
//	cd examples/worker-typescript && npm ci && npm start -- --addr 127.0.0.1:50051
//
// It logs JSON to stderr and stops gracefully on SIGINT or SIGTERM:
// running steps get --shutdown-timeout-ms to finish, the rest are given
// back to the server unrun.
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { TaskerClient, Worker, nonRetryable, withErrorType, type JsonObject, type Step } from "@taskerhq/client";

const { values: args } = parseArgs({
  options: {
    addr: { type: "string", default: process.env.TASKER_ADDR ?? "127.0.0.1:50051" },
    id: { type: "string", default: `example-ts-${hostname()}-${process.pid}` },
    concurrency: { type: "string", default: "10" },
    "shutdown-timeout-ms": { type: "string", default: "30000" },
  },
});

const client = new TaskerClient({ address: args.addr!, token: process.env.TASKER_TOKEN });
const worker = new Worker(client, {
  id: args.id,
  concurrency: Number(args.concurrency),
  shutdownTimeoutMs: Number(args["shutdown-timeout-ms"]),
});

/** echo returns its config and what its parents returned. */
worker.register("demo", "demo_echo", async (step) => {
  const parents: JsonObject = {};
  for (const name of step.parentNames()) {
    parents[name] = await step.parent(name);
  }
  return { message: step.config.message, step: step.name, attempt: step.attempt, parents };
});

/** sleep waits config.duration_ms, or less when its signal aborts. */
worker.register("demo", "demo_sleep", async (step) => {
  const ms = typeof step.config.duration_ms === "number" ? step.config.duration_ms : 0;
  if (ms < 0 || ms > 3_600_000) {
    throw nonRetryable(withErrorType(new Error(`duration_ms ${ms} is out of range`), "bad_config"));
  }
  const start = Date.now();
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    step.signal.addEventListener("abort", () => (clearTimeout(t), reject(step.signal.reason)), { once: true });
  });
  return { slept_ms: Date.now() - start };
});

interface Product {
  sku: string;
  name: string;
  price: number;
  stock: number;
}

/** catalogue stands in for the product service. */
const catalogue: Product[] = [
  { sku: "mug-blue", name: "Blue mug", price: 12.5, stock: 40 },
  { sku: "tea-earl", name: "Earl Grey, 100g", price: 7.9, stock: 120 },
  { sku: "teapot-1l", name: "Teapot, 1 l", price: 34, stock: 6 },
  { sku: "coaster-4", name: "Coasters, set of 4", price: 9.5, stock: 0 },
];

/** fnv1a32 is FNV-1a over the UTF-8 bytes, as examples/worker hashes cart ids. */
function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, "utf8")) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h;
}

/** round rounds money to cents. */
const round = (v: number) => Math.round(v * 100) / 100;

/**
 * fetch_cart builds the cart from the task context: its items when the
 * caller sent them, otherwise a cart the cart id always yields the same way.
 */
worker.register("ecommerce", "fetch_cart", (step) => {
  const cartId = step.context.cart_id;
  if (typeof cartId !== "string" || cartId === "") {
    throw nonRetryable(withErrorType(new Error("context.cart_id is required"), "bad_context"));
  }
  let items = step.context.items as JsonObject[] | undefined;
  if (!Array.isArray(items)) {
    const n = fnv1a32(cartId);
    items = [
      { sku: "mug-blue", quantity: 1 + (n % 3) },
      { sku: "tea-earl", quantity: 1 + (n % 2) },
    ];
    if (n % 4 === 0) {
      items.push({ sku: "teapot-1l", quantity: 1 });
    }
  }
  const prices = new Map(catalogue.map((p) => [p.sku, p.price]));
  const lines = items.map((it, i) => {
    const sku = it.sku;
    const qty = it.quantity;
    if (typeof sku !== "string" || sku === "" || typeof qty !== "number" || qty < 1) {
      throw nonRetryable(withErrorType(new Error(`context.items[${i}] needs a sku and a quantity >= 1`), "bad_context"));
    }
    // The cart remembers the price the customer saw.
    return { sku, quantity: qty, unit_price: prices.get(sku) ?? 0 };
  });
  return { cart_id: cartId, customer_id: step.context.customer_id ?? null, items: lines };
});

/** fetch_products loads the catalogue's prices and stock. */
worker.register("ecommerce", "fetch_products", () => ({
  products: Object.fromEntries(catalogue.map((p) => [p.sku, { ...p }])),
  fetched_at: new Date().toISOString(),
}));

/**
 * validate_products checks every cart line against the catalogue: known,
 * in stock, priced as in the cart. A failure is retried once (the
 * template's policy) in case the catalogue read was stale.
 */
worker.register("ecommerce", "validate_products", async (step) => {
  const cart = await step.parent("fetch_cart");
  const catalog = await step.parent("fetch_products");
  const products = (catalog.products ?? {}) as unknown as Record<string, Product>;
  const items = (cart.items ?? []) as unknown as { sku: string; quantity: number; unit_price: number }[];
  const problems: string[] = [];
  let subtotal = 0;
  for (const line of items) {
    const p = products[line.sku];
    if (!p) {
      problems.push(`${line.sku}: unknown product`);
      continue;
    }
    if (p.stock < line.quantity) {
      problems.push(`${line.sku}: ${p.stock} in stock, ${line.quantity} wanted`);
    } else if (p.price !== line.unit_price) {
      problems.push(`${line.sku}: price changed from ${line.unit_price} to ${p.price}`);
    }
    subtotal += line.quantity * line.unit_price;
  }
  if (problems.length > 0) {
    throw withErrorType(new Error(`cart ${String(cart.cart_id)} cannot be ordered: ${problems.sort().join("; ")}`), "validation_failed");
  }
  return { valid: true, items, subtotal: round(subtotal) };
});

/** vatRate is the example's flat sales tax. */
const vatRate = 0.2;

/** create_order turns the validated cart into an order with totals. */
worker.register("ecommerce", "create_order", async (step: Step) => {
  const valid = await step.parent("validate_products");
  const subtotal = typeof valid.subtotal === "number" ? valid.subtotal : 0;
  const tax = round(subtotal * vatRate);
  // Derived from the task id, so a retried attempt creates the same order
  // instead of a second one.
  const orderId = `ord-${step.taskId.slice(-12)}`;
  log("order created", { order_id: orderId, correlation_id: step.correlationId });
  return {
    order_id: orderId,
    customer_id: step.context.customer_id ?? null,
    currency: step.config.currency ?? null,
    items: valid.items ?? [],
    subtotal,
    tax,
    total: round(subtotal + tax),
    stock_reserved: step.config.reserve_stock === true,
  };
});

/** publish_event announces the order on the configured topic; here the "message bus" is the log. */
worker.register("ecommerce", "publish_event", async (step) => {
  const order = await step.parent("create_order");
  const topic = step.config.topic;
  if (typeof topic !== "string" || topic === "") {
    throw nonRetryable(withErrorType(new Error("config.topic is required"), "bad_config"));
  }
  const eventId = `${String(order.order_id)}-${step.id.slice(-8)}`;
  log("event published", { topic, event_id: eventId, order_id: order.order_id, total: order.total, correlation_id: step.correlationId });
  return { topic, event_id: eventId, published_at: new Date().toISOString() };
});

function log(msg: string, attrs: Record<string, unknown>) {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level: "INFO", msg, ...attrs }) + "\n");
}

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());
log("worker connecting", { addr: args.addr, worker_id: args.id });
await worker.run(stop.signal);
