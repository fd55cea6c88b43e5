/**
 * How a handler's error is reported. A plain Error (or anything thrown) is
 * retried with the step's backoff until its attempts run out; wrap it to say
 * otherwise. The wrappers compose in any order:
 *
 *     throw nonRetryable(withErrorType(new Error("bad cart"), "bad_context"));
 *     throw retryAfter(new Error("upstream busy"), 5_000);
 */
export class StepFailure extends Error {
  override name = "StepFailure";
  /** A short classification recorded on the step's last error, e.g. "http_503" (at most 128 bytes). */
  type = "";
  /** The failure is permanent: the step goes to error whatever attempts are left. */
  nonRetryable = false;
  /** Run the next attempt after this many milliseconds instead of the policy's backoff (capped by it). */
  retryAfterMs = 0;

  constructor(message: string, options?: { cause?: unknown; type?: string; nonRetryable?: boolean; retryAfterMs?: number }) {
    super(message, { cause: options?.cause });
    this.type = options?.type ?? "";
    this.nonRetryable = options?.nonRetryable ?? false;
    this.retryAfterMs = Math.max(options?.retryAfterMs ?? 0, 0);
  }
}

function wrap(err: unknown): StepFailure {
  if (err instanceof StepFailure) {
    return err;
  }
  return new StepFailure(messageOf(err), { cause: err });
}

/** nonRetryable marks err as permanent: no further attempt. */
export function nonRetryable(err: unknown): StepFailure {
  const f = wrap(err);
  f.nonRetryable = true;
  return f;
}

/** retryAfter asks for the next attempt after ms milliseconds (the server caps it by the policy's max backoff). */
export function retryAfter(err: unknown, ms: number): StepFailure {
  const f = wrap(err);
  f.retryAfterMs = Math.max(ms, 0);
  return f;
}

/** withErrorType classifies err with a short type recorded on the step's last error. */
export function withErrorType(err: unknown, type: string): StepFailure {
  const f = wrap(err);
  f.type = type;
  return f;
}

/** messageOf is what a thrown value says, never empty. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) {
    return err.message || `handler failed with an empty ${err.name}`;
  }
  const s = String(err);
  return s || "handler failed with an empty value";
}

/** truncate cuts s to at most n UTF-8 bytes without splitting a character. */
export function truncate(s: string, n: number): string {
  const buf = Buffer.from(s, "utf8");
  if (buf.length <= n) {
    return s;
  }
  let end = n;
  while (end > 0 && ((buf[end] ?? 0) & 0xc0) === 0x80) {
    end--;
  }
  return buf.subarray(0, end).toString("utf8");
}
