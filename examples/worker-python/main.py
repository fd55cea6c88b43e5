"""An example Tasker worker in Python (tasker_client, clients/python). It
serves every handler the templates in examples/templates use, like
examples/worker does with the Go SDK: demo_echo and demo_sleep in the demo
namespace; fetch_cart, fetch_products, validate_products, create_order and
publish_event in the ecommerce namespace; render_receipt in the checkout
namespace (http_checkout.yaml, whose HTTP steps the server runs itself).

    go run ./cmd/tasker serve --templates examples/templates
    PYTHONPATH=clients/python:gen/python /usr/bin/python3 examples/worker-python/main.py --addr 127.0.0.1:50051

It stops gracefully on SIGINT or SIGTERM: running steps get
--shutdown-timeout seconds to finish, the rest are given back unrun.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

try:
    import tasker_client  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH
    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root / "clients" / "python"), str(root / "gen" / "python")]

from tasker_client import Client, Step, StepFailure, Worker, non_retryable

log = logging.getLogger("worker-python")

# The catalogue stands in for the product service.
CATALOGUE = [
    {"sku": "mug-blue", "name": "Blue mug", "price": 12.5, "stock": 40},
    {"sku": "tea-earl", "name": "Earl Grey, 100g", "price": 7.9, "stock": 120},
    {"sku": "teapot-1l", "name": "Teapot, 1 l", "price": 34, "stock": 6},
    {"sku": "coaster-4", "name": "Coasters, set of 4", "price": 9.5, "stock": 0},
]
VAT_RATE = 0.2


def money(v: float) -> float:
    return round(v * 100) / 100


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def echo(step: Step) -> dict:
    """Returns its config's message and what its parents returned."""
    return {"message": step.config.get("message"), "step": step.name, "attempt": step.attempt, "parents": step.parents()}


def sleep(step: Step) -> dict:
    """Waits config.duration_ms, or less when the step is cancelled."""
    ms = step.config.get("duration_ms", 0)
    if not isinstance(ms, (int, float)) or ms < 0 or ms > 3_600_000:
        raise non_retryable(f"duration_ms {ms!r} is out of range", "bad_config")
    start = time.monotonic()
    step.sleep(ms / 1000)  # raises the cancellation reason
    return {"slept_ms": int((time.monotonic() - start) * 1000)}


def fetch_cart(step: Step) -> dict:
    """The cart from the task context: its items when the caller sent them,
    otherwise a cart the cart id always yields the same way."""
    cart_id = step.context.get("cart_id")
    if not isinstance(cart_id, str) or not cart_id:
        raise non_retryable("context.cart_id is required", "bad_context")
    items = step.context.get("items")
    if not isinstance(items, list):
        n = fnv32a(cart_id.encode())
        items = [{"sku": "mug-blue", "quantity": 1 + n % 3}, {"sku": "tea-earl", "quantity": 1 + n % 2}]
        if n % 4 == 0:
            items.append({"sku": "teapot-1l", "quantity": 1})
    prices = {p["sku"]: p["price"] for p in CATALOGUE}
    lines = []
    for i, it in enumerate(items):
        sku, qty = (it or {}).get("sku"), (it or {}).get("quantity")
        if not sku or not isinstance(qty, (int, float)) or qty < 1:
            raise non_retryable(f"context.items[{i}] needs a sku and a quantity >= 1", "bad_context")
        # The cart remembers the price the customer saw.
        lines.append({"sku": sku, "quantity": qty, "unit_price": prices.get(sku, 0)})
    return {"cart_id": cart_id, "customer_id": step.context.get("customer_id"), "items": lines}


def fetch_products(step: Step) -> dict:
    """The catalogue's prices and stock."""
    return {"products": {p["sku"]: p for p in CATALOGUE}, "fetched_at": dt.datetime.now(dt.timezone.utc).isoformat()}


def validate_products(step: Step) -> dict:
    """Every cart line known, in stock, priced as in the cart. A failure is
    retried once (the template's policy) in case the catalogue was stale."""
    cart, catalog = step.parent("fetch_cart"), step.parent("fetch_products")
    products = catalog.get("products", {})
    problems, subtotal = [], 0.0
    for line in cart.get("items", []):
        sku, qty, price = line["sku"], line["quantity"], line["unit_price"]
        p = products.get(sku)
        if p is None:
            problems.append(f"{sku}: unknown product")
            continue
        if p["stock"] < qty:
            problems.append(f"{sku}: {p['stock']} in stock, {qty} wanted")
        elif p["price"] != price:
            problems.append(f"{sku}: price changed from {price} to {p['price']}")
        subtotal += qty * price
    if problems:
        raise StepFailure(f"cart {cart.get('cart_id')} cannot be ordered: {sorted(problems)}", error_type="validation_failed")
    return {"valid": True, "items": cart.get("items", []), "subtotal": money(subtotal)}


def create_order(step: Step) -> dict:
    """The validated cart as an order with totals; the id comes from the task,
    so a retried attempt creates the same order."""
    valid = step.parent("validate_products")
    subtotal = valid.get("subtotal", 0)
    tax = money(subtotal * VAT_RATE)
    order_id = "ord-" + step.task_id[-12:]
    log.info("order created: %s (correlation id %s)", order_id, step.correlation_id)
    return {
        "order_id": order_id, "customer_id": step.context.get("customer_id"), "currency": step.config.get("currency"),
        "items": valid.get("items"), "subtotal": subtotal, "tax": tax, "total": money(subtotal + tax),
        "stock_reserved": bool(step.config.get("reserve_stock")),
    }


def publish_event(step: Step) -> dict:
    """Announces the order on the configured topic; here the bus is the log."""
    order = step.parent("create_order")
    topic = step.config.get("topic")
    if not topic:
        raise non_retryable("config.topic is required", "bad_config")
    event_id = f"{order.get('order_id')}-{step.id[-8:]}"
    log.info("event published: %s on %s (total %s)", event_id, topic, order.get("total"))
    return {"topic": topic, "event_id": event_id, "published_at": dt.datetime.now(dt.timezone.utc).isoformat()}


def render_receipt(step: Step) -> dict:
    """The receipt text of a priced checkout (http_checkout.yaml): its
    parent price_order ran in the Go worker."""
    price = step.parent("price_order")
    total = price.get("total_cents")
    if not isinstance(total, (int, float)):
        raise non_retryable("price_order returned no total_cents", "bad_parent")
    net = price.get("net_cents", total)
    return {"receipt": f"Order {step.task_id}: net {net / 100:.2f}, total {total / 100:.2f} (tax included)"}


HANDLERS = {
    ("demo", "demo_echo"): echo,
    ("demo", "demo_sleep"): sleep,
    ("ecommerce", "fetch_cart"): fetch_cart,
    ("ecommerce", "fetch_products"): fetch_products,
    ("ecommerce", "validate_products"): validate_products,
    ("ecommerce", "create_order"): create_order,
    ("ecommerce", "publish_event"): publish_event,
    ("checkout", "render_receipt"): render_receipt,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default="127.0.0.1:50051", help="Tasker server address")
    ap.add_argument("--id", default=f"example-py-{socket.gethostname()}-{os.getpid()}", help="worker id shown by ListHandlers")
    ap.add_argument("--concurrency", type=int, default=10, help="steps run at once")
    ap.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds running steps may finish on shutdown")
    ap.add_argument("--token", default=os.environ.get("TASKER_TOKEN"), help="API token [TASKER_TOKEN]")
    ap.add_argument("--tls-ca", help="PEM bundle of the CA that signed the server's certificate (turns TLS on)")
    ap.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    ap.add_argument("--tls-key", help="key (PEM) of --tls-cert")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    client = Client(args.addr, token=args.token, ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
    worker = Worker(client, args.id, concurrency=args.concurrency, shutdown_timeout=args.shutdown_timeout)
    for (namespace, handler), fn in HANDLERS.items():
        worker.register(namespace, handler, fn)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("worker %s connecting to %s", args.id, args.addr)
    worker.start()
    while not stop.wait(1.0) and worker.join(0) is False:
        pass
    worker.stop()
    client.close()
    if worker.error is not None:
        log.error("worker failed: %s", worker.error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
