"""The Subscriber resumes after a disconnect (a server restart) from the last
sequence it saw: every event of its filter once, in order."""

from __future__ import annotations

import threading

import pytest
from conftest import Server, wait_for

from tasker_client import Subscriber, from_struct, pb, to_struct


@pytest.fixture
def restartable(tasker_bin, tmp_path):
    s = Server(tasker_bin, tmp_path, ["--auth", "none"])
    s.start()
    yield s
    s.stop()


def test_subscriber_resumes_after_restart(restartable):
    c = restartable.client()
    flt = pb.EventFilter(types=["py.*"])
    sub = Subscriber(c, flt, start=pb.START_POSITION_NOW, heartbeat_interval=0.2, max_backoff=0.5)
    seen: list = []
    done = threading.Event()

    def consume():
        for ev in sub:
            seen.append(ev)
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert sub.started.wait(20)

    def publish(i: int) -> int:
        return c.events.PublishEvent(pb.PublishEventRequest(type="py.tick", payload=to_struct({"i": i}))).event.sequence

    before = [publish(i) for i in range(3)]
    wait_for(lambda: len(seen) == 3, 20, 0.02, "the first events")
    restartable.stop()  # streams end with Unavailable
    restartable.start()
    after = [publish(i) for i in range(3, 6)]
    wait_for(lambda: len(seen) == 6, 30, 0.02, "the events after the restart")
    sub.close()
    assert done.wait(10)
    assert [e.sequence for e in seen] == before + after
    assert [from_struct(e.payload)["i"] for e in seen] == list(range(6))
    assert sub.reconnects >= 1
    c.close()
