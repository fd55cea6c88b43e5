import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskerClient } from "./client.js";
import { toTaskerError } from "./errors.js";
import { StartPosition, type Event, type EventFilter } from "./gen/tasker/v1/event_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EventFilterSchema } from "./gen/tasker/v1/event_pb.js";

/** Options of subscribe. */
export interface SubscribeOptions {
  /** Which events; all when unset. */
  filter?: MessageInitShape<typeof EventFilterSchema> | EventFilter;
  /** Where to start the first time: NOW (default), BEGINNING, or AFTER_SEQUENCE with afterSequence. */
  start?: StartPosition;
  /** With start AFTER_SEQUENCE: the last sequence already seen. */
  afterSequence?: bigint;
  /** End once the filtered task finishes (filter.taskId required). */
  untilTaskFinished?: boolean;
  /** How often the server sends a heartbeat when nothing matches, in ms; the server's default when unset. */
  heartbeatIntervalMs?: number;
  /** Ends the subscription. */
  signal?: AbortSignal;
  /** Reconnections in a row before giving up; default unlimited. */
  maxReconnects?: number;
  /** Called before each reconnection with the error that ended the stream. */
  onReconnect?: (err: Error, afterSequence: bigint) => void;
}

/**
 * reconnectable tells the errors a broken connection or a restarting
 * server causes (Canceled is an HTTP/2 stream reset when the caller did not
 * abort).
 */
function reconnectable(code: Code): boolean {
  return code === Code.Canceled || code === Code.Unavailable || code === Code.Internal || code === Code.Unknown || code === Code.DeadlineExceeded || code === Code.Aborted || code === Code.ResourceExhausted;
}

/**
 * subscribe yields the events that match, in sequence order, and survives
 * disconnects: after a stream breaks it connects again and resumes after
 * the last sequence it saw (or the last the server said it scanned, from
 * heartbeats), so no event is missed or repeated; a stream the server
 * ends (at shutdown) is resumed the same way. It ends when signal aborts, when the task finishes (untilTaskFinished), or with a TaskerError
 * the server meant (InvalidArgument, PermissionDenied, LogTruncatedError
 * when retention deleted events not yet seen, ...).
 *
 *     for await (const ev of subscribe(client, { filter: { taskId }, start: StartPosition.BEGINNING, untilTaskFinished: true })) {
 *       console.log(ev.sequence, ev.type);
 *     }
 */
export async function* subscribe(client: TaskerClient, options: SubscribeOptions = {}): AsyncGenerator<Event, void, undefined> {
  let start = options.start ?? StartPosition.NOW;
  let after = options.afterSequence ?? 0n;
  let failures = 0;
  const heartbeat = options.heartbeatIntervalMs
    ? { seconds: BigInt(Math.floor(options.heartbeatIntervalMs / 1000)), nanos: (options.heartbeatIntervalMs % 1000) * 1_000_000 }
    : undefined;
  for (;;) {
    try {
      const stream = client.events.subscribe(
        {
          filter: options.filter,
          start,
          afterSequence: start === StartPosition.AFTER_SEQUENCE ? after : 0n,
          untilTaskFinished: options.untilTaskFinished ?? false,
          heartbeatInterval: heartbeat,
        },
        { signal: options.signal },
      );
      for await (const res of stream) {
        switch (res.message.case) {
          case "started":
            // From here on a reconnection resumes exactly where this one started.
            if (start !== StartPosition.AFTER_SEQUENCE) {
              start = StartPosition.AFTER_SEQUENCE;
              after = res.message.value.startAfterSequence;
            }
            failures = 0;
            break;
          case "event":
            if (res.message.value.sequence > after) {
              after = res.message.value.sequence;
              yield res.message.value;
            }
            break;
          case "heartbeat":
            if (res.message.value.scannedSequence > after) {
              after = res.message.value.scannedSequence;
            }
            break;
        }
      }
      if (options.untilTaskFinished || options.signal?.aborted) {
        return;
      }
      // Without untilTaskFinished a stream ends only when the server shuts
      // down: resume from another replica or once it is back.
      throw new ConnectError("the server ended the subscription", Code.Unavailable);
    } catch (err) {
      if (options.signal?.aborted) {
        return;
      }
      const te = toTaskerError(err);
      failures++;
      if (!reconnectable(te.code) || (options.maxReconnects !== undefined && failures > options.maxReconnects)) {
        throw te;
      }
      options.onReconnect?.(te, after);
      const wait = Math.min(100 * 2 ** (failures - 1), 5_000);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait / 2 + Math.random() * (wait / 2));
        options.signal?.addEventListener("abort", () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
      if (options.signal?.aborted) {
        return;
      }
    }
  }
}
