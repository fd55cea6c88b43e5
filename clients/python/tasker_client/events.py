"""A Subscribe stream that survives disconnects."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator

import grpc
from google.protobuf import duration_pb2
from tasker.v1 import event_pb2

from .client import Client
from .errors import TaskerError

log = logging.getLogger("tasker_client.events")

# Codes after which the subscriber reconnects: the server went away, is
# shutting down, or the connection broke.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED)


class Subscriber:
    """Iterates the events of a filter, in sequence order, each once.

    It remembers the last sequence it saw (an event's, or a heartbeat's
    scanned_sequence) and, when the stream breaks, reconnects with
    START_POSITION_AFTER_SEQUENCE after it, with a jittered backoff. A
    resume point older than the retained log raises LogTruncatedError.

        sub = Subscriber(client, pb.EventFilter(task_id=tid), start=pb.START_POSITION_BEGINNING,
                         until_task_finished=True)
        for event in sub:                       # tasker.v1.Event
            print(event.sequence, event.type, from_struct(event.payload))

    start: a StartPosition for the first connection; after_sequence starts
    after that sequence instead. close() ends the iteration from any thread.
    """

    def __init__(
        self,
        client: Client,
        filter: event_pb2.EventFilter | None = None,
        *,
        start: int = event_pb2.START_POSITION_NOW,
        after_sequence: int | None = None,
        until_task_finished: bool = False,
        heartbeat_interval: float | None = None,
        correlation_id: str | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._client = client
        self.filter = filter or event_pb2.EventFilter()
        self._start = start
        self.last_sequence: int | None = after_sequence
        self.until_task_finished = until_task_finished
        self.heartbeat_interval = heartbeat_interval
        self.correlation_id = correlation_id
        self.max_backoff = max_backoff
        self.reconnects = 0
        self.started = threading.Event()  # set once a stream has started
        self._closed = threading.Event()
        self._stream = None
        self._lock = threading.Lock()

    def _request(self) -> event_pb2.SubscribeRequest:
        req = event_pb2.SubscribeRequest(filter=self.filter, until_task_finished=self.until_task_finished)
        if self.last_sequence is not None:
            req.start = event_pb2.START_POSITION_AFTER_SEQUENCE
            req.after_sequence = self.last_sequence
        else:
            req.start = self._start
        if self.heartbeat_interval:
            req.heartbeat_interval.CopyFrom(duration_pb2.Duration(
                seconds=int(self.heartbeat_interval), nanos=int((self.heartbeat_interval % 1) * 1e9)))
        return req

    def __iter__(self) -> Iterator[event_pb2.Event]:
        failures = 0
        while not self._closed.is_set():
            with self._lock:
                if self._closed.is_set():
                    return
                self._stream = self._client.events.Subscribe(self._request(), correlation_id=self.correlation_id)
            try:
                for msg in self._stream:
                    kind = msg.WhichOneof("message")
                    if kind == "started":
                        failures = 0
                        if self.last_sequence is None:
                            self.last_sequence = msg.started.start_after_sequence
                        self.started.set()
                    elif kind == "heartbeat":
                        self.last_sequence = max(self.last_sequence or 0, msg.heartbeat.scanned_sequence)
                    elif kind == "event":
                        if self.last_sequence is not None and msg.event.sequence <= self.last_sequence:
                            continue
                        self.last_sequence = msg.event.sequence
                        yield msg.event
                if self._closed.is_set() or self.until_task_finished:
                    return  # the task finished and every event was delivered
            except TaskerError as err:
                if self._closed.is_set():
                    return
                if err.code not in RETRYABLE:
                    raise
                failures += 1
                delay = min(self.max_backoff, 0.1 * 2 ** (failures - 1)) * (1 - 0.2 * random.random())
                log.info("subscription broke (%s); resuming after sequence %s in %.2fs", err.code.name, self.last_sequence, delay)
                self.reconnects += 1
                if self._closed.wait(delay):
                    return
            else:
                self.reconnects += 1

    def close(self) -> None:
        """Ends the iteration (from any thread)."""
        with self._lock:
            self._closed.set()
            if self._stream is not None:
                self._stream.cancel()
