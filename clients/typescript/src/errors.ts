import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

/** The ErrorInfo domain of every error Tasker returns. */
export const ERROR_DOMAIN = "tasker.v1";

/** The ErrorInfo reasons of the contract (fault/fault.go). */
export const Reason = {
  InvalidState: "INVALID_STATE",
  AlreadyCompleted: "ALREADY_COMPLETED",
  LeaseLost: "LEASE_LOST",
  TimedOut: "TIMED_OUT",
  Cancelled: "CANCELLED",
  LogTruncated: "LOG_TRUNCATED",
  TokenInvalid: "TOKEN_INVALID",
  ScopeMissing: "SCOPE_MISSING",
  NamespaceDenied: "NAMESPACE_DENIED",
  RateLimited: "RATE_LIMITED",
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

/** One bad field of a request, from a BadRequest detail. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** The resource an error is about, from a ResourceInfo detail. */
export interface ResourceRef {
  type: string;
  name: string;
}

/**
 * TaskerError is every error a TaskerClient call throws for a status the
 * server (or the transport) answered. It is a ConnectError, so `code` is
 * the gRPC status code (Code from @connectrpc/connect), with the decoded
 * details: the ErrorInfo `reason` and `reasonMetadata`, BadRequest's
 * `fieldViolations`, ResourceInfo's `resource` and RetryInfo's
 * `retryDelayMs`. Errors with a reason are instances of the subclass of
 * that reason (LeaseLostError, InvalidStateError, ...).
 */
export class TaskerError extends ConnectError {
  // name stays "ConnectError": @connectrpc/connect recognises its errors by
  // it and would otherwise wrap a TaskerError in a plain ConnectError. The
  // class is err.constructor.name.

  /** instanceof by prototype chain (ConnectError's own test accepts any ConnectError). */
  static override [Symbol.hasInstance](v: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, v);
  }

  /** The ErrorInfo reason, or "" when the error has none. */
  readonly reason: string;
  /**
   * The ErrorInfo metadata, e.g. { current_state: "STEP_STATE_COMPLETE" }
   * (`metadata`, from ConnectError, is the response's headers and trailers).
   */
  readonly reasonMetadata: Readonly<Record<string, string>>;
  /** The fields a request got wrong (InvalidArgument). */
  readonly fieldViolations: readonly FieldViolation[];
  /** The resource at fault, when the server named one. */
  readonly resource: ResourceRef | undefined;
  /** How long to wait before trying again, in milliseconds, when the server said. */
  readonly retryDelayMs: number | undefined;

  /**
   * Decodes err's details. entry gives the reason and metadata of a batch
   * entry's result, which travel without details.
   */
  constructor(err: ConnectError, entry?: { reason: string; metadata: Record<string, string> }) {
    super(err.rawMessage, err.code, err.metadata, undefined, err.cause ?? err);
    this.details = err.details;
    const info = err.findDetails(ErrorInfoSchema)[0];
    this.reason = entry?.reason ?? info?.reason ?? "";
    this.reasonMetadata = { ...(entry?.metadata ?? info?.metadata ?? {}) };
    this.fieldViolations = err
      .findDetails(BadRequestSchema)
      .flatMap((br) => br.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
    const res = err.findDetails(ResourceInfoSchema)[0];
    this.resource = res ? { type: res.resourceType, name: res.resourceName } : undefined;
    const retry = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryDelayMs =
      retry === undefined ? undefined : Number(retry.seconds) * 1000 + Math.round(retry.nanos / 1e6);
  }
}

/** FailedPrecondition: the resource is not in a state that allows the call (metadata current_state). */
export class InvalidStateError extends TaskerError {}
/** FailedPrecondition: the same lease already reported a different outcome. */
export class AlreadyCompletedError extends TaskerError {}
/** Aborted: the lease expired, was reaped or belongs to another attempt. */
export class LeaseLostError extends TaskerError {}
/** Aborted: the attempt passed its execution timeout. */
export class TimedOutError extends TaskerError {}
/** Aborted: the step or its task was cancelled. */
export class CancelledError extends TaskerError {}
/** OutOfRange: events asked for were already deleted by retention (metadata oldest_sequence). */
export class LogTruncatedError extends TaskerError {}
/** Unauthenticated: the bearer token is missing, unknown, expired or revoked. */
export class TokenInvalidError extends TaskerError {}
/** PermissionDenied: the token lacks the scope in metadata "scope". */
export class ScopeMissingError extends TaskerError {}
/** PermissionDenied: the token may not act on the namespace in metadata "namespace". */
export class NamespaceDeniedError extends TaskerError {}
/** ResourceExhausted: the token made more calls than its rate allows; see retryDelayMs. */
export class RateLimitedError extends TaskerError {}

const byReason: Record<string, new (err: ConnectError, entry?: { reason: string; metadata: Record<string, string> }) => TaskerError> = {
  [Reason.InvalidState]: InvalidStateError,
  [Reason.AlreadyCompleted]: AlreadyCompletedError,
  [Reason.LeaseLost]: LeaseLostError,
  [Reason.TimedOut]: TimedOutError,
  [Reason.Cancelled]: CancelledError,
  [Reason.LogTruncated]: LogTruncatedError,
  [Reason.TokenInvalid]: TokenInvalidError,
  [Reason.ScopeMissing]: ScopeMissingError,
  [Reason.NamespaceDenied]: NamespaceDeniedError,
  [Reason.RateLimited]: RateLimitedError,
};

/**
 * toTaskerError converts anything a call threw into a TaskerError of the
 * class of its reason. A TaskerError is returned as it is; anything else
 * becomes a ConnectError first (Code.Unknown for a plain Error).
 */
export function toTaskerError(err: unknown): TaskerError {
  if (err instanceof TaskerError) {
    return err;
  }
  const ce = ConnectError.from(err);
  const info = ce.findDetails(ErrorInfoSchema)[0];
  const Cls = info && info.domain === ERROR_DOMAIN ? byReason[info.reason] : undefined;
  return new (Cls ?? TaskerError)(ce);
}

/**
 * errorFromEntry turns a batch entry's result (EntryResult of
 * ExtendLease, BatchCompleteSteps, BatchFailSteps) into the TaskerError
 * the single-entry call would have thrown, or undefined when it is OK.
 */
export function errorFromEntry(r: { code: number; message: string; reason: string; metadata: Record<string, string> } | undefined): TaskerError | undefined {
  if (!r || r.code === 0) {
    return undefined;
  }
  const Cls = r.reason ? byReason[r.reason] : undefined;
  return new (Cls ?? TaskerError)(new ConnectError(r.message, r.code as Code), r);
}

/** isTransient tells errors worth repeating a call for: the server could not serve it now. */
export function isTransient(err: unknown): boolean {
  const code = err instanceof ConnectError ? err.code : ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.ResourceExhausted;
}

export { Code };
