"""examples/worker-python serves the example templates end to end and stops
cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

from conftest import REPO, wait_task

from tasker_client import from_struct, pb


def test_example_worker(server, client, tmp_path):
    logf = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "worker-python" / "main.py"),
                             "--addr", server.address, "--id", "example-py-test", "--shutdown-timeout", "5"],
                            stdout=logf, stderr=logf)
    try:
        order = client.create_task("ecommerce", "order_fulfillment",
                                   {"cart_id": f"cart-{uuid.uuid4().hex[:8]}", "customer_id": 7},
                                   correlation_id="py-example-1").task
        diamond = client.create_task("demo", "diamond").task
        wait_task(client, order.id, pb.TASK_STATE_COMPLETE, timeout=60)
        wait_task(client, diamond.id, pb.TASK_STATE_COMPLETE, timeout=60)
        steps = {s.name: s.id for s in client.get_task(order.id).steps}
        created = from_struct(client.steps.GetStep(pb.GetStepRequest(id=steps["create_order"])).step.result)
        assert created["order_id"] == "ord-" + order.id[-12:]
        assert created["total"] == round(created["subtotal"] * 1.2, 2)
        assert created["customer_id"] == 7 and created["currency"] == "EUR"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        logf.close()
    assert code == 0, (tmp_path / "worker.log").read_text()
