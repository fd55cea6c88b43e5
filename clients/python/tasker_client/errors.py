"""Typed errors: every failed call raises a TaskerError, or the subclass of
its ErrorInfo reason (domain "tasker.v1"), decoded from the status details
the server sends (google.rpc ErrorInfo, BadRequest, ResourceInfo, RetryInfo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "tasker.v1"
_DETAILS_KEY = "grpc-status-details-bin"
_CORRELATION_KEY = "x-correlation-id"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest), e.g. "context"."""

    field: str
    description: str


@dataclass(frozen=True)
class ResourceInfo:
    """The resource at fault (google.rpc.ResourceInfo)."""

    resource_type: str
    resource_name: str


class TaskerError(Exception):
    """A call the server refused or failed.

    code is the grpc.StatusCode; reason and metadata come from ErrorInfo
    (reason is "" when the server sent none); field_violations from
    BadRequest; resource from ResourceInfo; retry_after (seconds) from
    RetryInfo; correlation_id is the call's id as the server recorded it.
    """

    reason_name = ""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
        resource: ResourceInfo | None = None,
        retry_after: float | None = None,
        correlation_id: str = "",
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations or [])
        self.resource = resource
        self.retry_after = retry_after
        self.correlation_id = correlation_id


class InvalidStateError(TaskerError):
    """FailedPrecondition: the state machine does not allow the call; metadata current_state (and task_state)."""

    reason_name = "INVALID_STATE"


class AlreadyCompletedError(TaskerError):
    """FailedPrecondition: the same lease already completed or failed the step differently."""

    reason_name = "ALREADY_COMPLETED"


class LeaseLostError(TaskerError):
    """Aborted: the lease expired, was reaped or belongs to another attempt."""

    reason_name = "LEASE_LOST"


class TimedOutError(TaskerError):
    """Aborted: the attempt passed its execution timeout."""

    reason_name = "TIMED_OUT"


class CancelledError(TaskerError):
    """Aborted: the step or its task was cancelled."""

    reason_name = "CANCELLED"


class LogTruncatedError(TaskerError):
    """OutOfRange: the resume point is older than the retained log; metadata oldest_sequence."""

    reason_name = "LOG_TRUNCATED"


class TokenInvalidError(TaskerError):
    """Unauthenticated: the bearer token is missing, unknown, expired or revoked."""

    reason_name = "TOKEN_INVALID"


class ScopeMissingError(TaskerError):
    """PermissionDenied: the token lacks the scope in metadata "scope"."""

    reason_name = "SCOPE_MISSING"


class NamespaceDeniedError(TaskerError):
    """PermissionDenied: the token may not act on the namespace in metadata "namespace"."""

    reason_name = "NAMESPACE_DENIED"


class RateLimitedError(TaskerError):
    """ResourceExhausted: the token made more calls than its rate allows; retry_after says when to try again."""

    reason_name = "RATE_LIMITED"


class InvalidArgumentError(TaskerError):
    """InvalidArgument: field_violations names each bad field."""


class NotFoundError(TaskerError):
    """NotFound: resource names what does not exist."""


class AlreadyExistsError(TaskerError):
    """AlreadyExists: resource names what exists already."""


class UnavailableError(TaskerError):
    """Unavailable: the server or its database cannot serve the call now; try again."""


ERRORS_BY_REASON: dict[str, type[TaskerError]] = {
    cls.reason_name: cls
    for cls in (
        InvalidStateError,
        AlreadyCompletedError,
        LeaseLostError,
        TimedOutError,
        CancelledError,
        LogTruncatedError,
        TokenInvalidError,
        ScopeMissingError,
        NamespaceDeniedError,
        RateLimitedError,
    )
}

_ERRORS_BY_CODE: dict[grpc.StatusCode, type[TaskerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}

_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a canonical code number (EntryResult.code)."""
    return _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def make_error(code: grpc.StatusCode, message: str, *, reason: str = "", **kw) -> TaskerError:
    """The TaskerError subclass for reason, or for code when there is no reason."""
    cls = ERRORS_BY_REASON.get(reason) or _ERRORS_BY_CODE.get(code, TaskerError)
    return cls(code, message, reason=reason, **kw)


def _metadata_value(md, key: str):
    for k, v in md or ():
        if k == key:
            return v
    return None


def from_rpc_error(err: grpc.RpcError) -> TaskerError:
    """Decodes a grpc.RpcError from a call into its typed error."""
    if isinstance(err, TaskerError):
        return err
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    initial = None
    try:
        initial = err.initial_metadata() if hasattr(err, "initial_metadata") else None
    except Exception:  # noqa: BLE001 - a call that never got headers
        initial = None
    kw: dict = {"correlation_id": _metadata_value(initial, _CORRELATION_KEY) or ""}
    reason = ""
    raw = _metadata_value(trailing, _DETAILS_KEY)
    if raw:
        st = status_pb2.Status.FromString(raw)
        message = st.message or message
        violations: list[FieldViolation] = []
        for any_msg in st.details:
            if any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_msg.Unpack(info)
                reason = info.reason
                kw["metadata"] = dict(info.metadata)
            elif any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                any_msg.Unpack(br)
                violations += [FieldViolation(v.field, v.description) for v in br.field_violations]
            elif any_msg.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                ri = error_details_pb2.ResourceInfo()
                any_msg.Unpack(ri)
                kw["resource"] = ResourceInfo(ri.resource_type, ri.resource_name)
            elif any_msg.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                rinfo = error_details_pb2.RetryInfo()
                any_msg.Unpack(rinfo)
                kw["retry_after"] = rinfo.retry_delay.seconds + rinfo.retry_delay.nanos / 1e9
        kw["field_violations"] = violations
    return make_error(code, message or "", reason=reason, **kw)


def from_entry_result(result) -> TaskerError | None:
    """The typed error of a batch entry (tasker.v1.EntryResult), or None when it is OK."""
    if result.code == 0:
        return None
    return make_error(status_code(result.code), result.message, reason=result.reason, metadata=dict(result.metadata))
