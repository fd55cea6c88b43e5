"""Python client of Tasker (tasker.v1): a Client over the generated stubs,
JSON <-> Struct helpers, typed errors, a Worker with the Go SDK's semantics
and a resumable event Subscriber.

Numbers in contexts, configs, results and payloads travel as doubles
(google.protobuf.Struct): integral values come back as int, others as float,
and integers beyond +-2**53 are refused rather than rounded.
"""

from . import pb
from .client import CORRELATION_HEADER, Client, Method, Stream, new_correlation_id
from .errors import (
    ERRORS_BY_REASON,
    AlreadyCompletedError,
    AlreadyExistsError,
    CancelledError,
    FieldViolation,
    InvalidArgumentError,
    InvalidStateError,
    LeaseLostError,
    LogTruncatedError,
    NamespaceDeniedError,
    NotFoundError,
    RateLimitedError,
    ResourceInfo,
    ScopeMissingError,
    TaskerError,
    TimedOutError,
    TokenInvalidError,
    UnavailableError,
    from_entry_result,
    from_rpc_error,
)
from .events import Subscriber
from .structs import from_struct, from_value, to_struct, to_value
from .worker import ShutdownError, Step, StepFailure, Worker, non_retryable

__all__ = [
    "CORRELATION_HEADER", "Client", "Method", "Stream", "new_correlation_id", "pb",
    "ERRORS_BY_REASON", "TaskerError", "InvalidStateError", "AlreadyCompletedError", "LeaseLostError",
    "TimedOutError", "CancelledError", "LogTruncatedError", "TokenInvalidError", "ScopeMissingError",
    "NamespaceDeniedError", "RateLimitedError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError",
    "UnavailableError", "FieldViolation", "ResourceInfo", "from_rpc_error", "from_entry_result",
    "Subscriber", "to_struct", "from_struct", "to_value", "from_value",
    "Worker", "Step", "StepFailure", "ShutdownError", "non_retryable",
]
