"""The Python side of the polyglot test (clients/polyglot) and of
`tasker bench --worker-cmd`: one program, three modes, JSON lines on stdout.

    polyglot.py worker --addr A --id ID          serves polyglot/py_mix
    polyglot.py subscribe --addr A TASK...       each task's events, until it finishes
    polyglot.py noop --addr A --namespace NS --handler H --concurrency N

Flags default to the environment `tasker bench --worker-cmd` sets
(TASKER_ADDR, TASKER_TOKEN, TASKER_BENCH_NAMESPACE, ...).

py_mix returns {"lang", "step", "value", "parents"}: value is the task's
context.seed + the step's config.add + the parents' values, and parents
maps each parent to the language and value it reported. With context.hold
it first prints {"kind": "holding"} and waits for the step's cancellation,
which it prints as {"kind": "cancelled", "reason": <ErrorInfo reason>}.
Workers stop gracefully on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

try:
    import tasker_client  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH
    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root / "clients" / "python"), str(root / "gen" / "python")]

from tasker_client import Client, Step, Subscriber, Worker, from_struct, pb

_out = threading.Lock()


def emit(**fields) -> None:
    with _out:
        sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def mix(step: Step) -> dict:
    if step.context.get("hold"):
        emit(kind="holding", lang="python", task=step.task_id, step=step.name)
        if step.cancelled.wait(60):
            reason = step.cancel_reason
            emit(kind="cancelled", lang="python", task=step.task_id, step=step.name,
                 reason=getattr(reason, "reason", "") or type(reason).__name__)
        step.raise_if_cancelled()
    parents = step.parents()
    value = step.context["seed"] + step.config["add"] + sum(p["value"] for p in parents.values())
    return {"lang": "python", "step": step.name, "value": value,
            "parents": {name: {"lang": p["lang"], "value": p["value"]} for name, p in parents.items()}}


def serve(client: Client, worker: Worker) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    emit(kind="started", lang="python", worker=worker.id)
    while not stop.wait(0.5) and worker.join(0) is False:
        pass
    worker.stop()
    client.close()
    if worker.error is not None:
        print(f"worker failed: {worker.error}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["worker", "subscribe", "noop"])
    ap.add_argument("tasks", nargs="*", help="subscribe: the tasks whose events to print")
    env = os.environ.get  # the defaults `tasker bench --worker-cmd` sets
    ap.add_argument("--addr", default=env("TASKER_ADDR", "127.0.0.1:50051"))
    ap.add_argument("--token", default=env("TASKER_TOKEN"))
    ap.add_argument("--id", default=env("TASKER_BENCH_WORKER_ID", "polyglot-py"))
    ap.add_argument("--namespace", default=env("TASKER_BENCH_NAMESPACE", "polyglot"))
    ap.add_argument("--handler", default=env("TASKER_BENCH_HANDLER", "noop"))
    ap.add_argument("--concurrency", type=int, default=int(env("TASKER_BENCH_CONCURRENCY", "8")))
    args = ap.parse_intermixed_args()
    client = Client(args.addr, token=args.token)

    if args.mode == "subscribe":
        for task in args.tasks:
            sub = Subscriber(client, pb.EventFilter(task_id=task), start=pb.START_POSITION_BEGINNING, until_task_finished=True)
            for ev in sub:
                emit(kind="event", lang="python", task=task, sequence=ev.sequence, type=ev.type, step=ev.step_id,
                     payload=from_struct(ev.payload))
            emit(kind="finished", lang="python", task=task)
        client.close()
        return 0

    if args.mode == "worker":
        # Heartbeats every 200ms, so a cancellation reaches a handler quickly.
        worker = Worker(client, args.id, concurrency=args.concurrency, heartbeat_interval=0.2, shutdown_timeout=5)
        worker.register(args.namespace, "py_mix", mix)
    else:
        worker = Worker(client, args.id, concurrency=args.concurrency, shutdown_timeout=5)
        worker.register(args.namespace, args.handler, lambda step: {"ok": True})
    return serve(client, worker)


if __name__ == "__main__":
    sys.exit(main())
