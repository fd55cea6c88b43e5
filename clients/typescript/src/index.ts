/**
 * @taskerhq/client: a typed client and worker library for Tasker.
 *
 * - TaskerClient: one HTTP/2 connection (the gRPC protocol) with a typed
 *   client per service (tasks, steps, registry, events), authorization,
 *   TLS and correlation ids;
 * - typed errors: TaskerError and one subclass per ErrorInfo reason;
 * - toStruct / fromStruct: JSON documents for Struct fields (numbers are
 *   doubles);
 * - Worker: runs handlers for claimed steps, as the Go SDK does;
 * - subscribe: an event stream that resumes after disconnects.
 *
 * The generated messages and enums are exported too (TaskState, StepState,
 * StartPosition, ...); the rest of the generated code is under
 * "@taskerhq/client/gen/tasker/v1/*_pb".
 */
export { TaskerClient, Correlation, CORRELATION_HEADER, type ClientOptions, type TlsOptions, type Pem } from "./client.js";
export * from "./errors.js";
export { toStruct, toJsonValue, fromStruct, type JsonObject, type JsonValue } from "./struct.js";
export { StepFailure, nonRetryable, retryAfter, withErrorType } from "./failure.js";
export { Worker, Step, ShutdownError, type Handler, type Logger, type WorkerOptions } from "./worker.js";
export { subscribe, type SubscribeOptions } from "./events.js";
export { TaskState, StepState, IdentityStrategy } from "./gen/tasker/v1/common_pb.js";
export { StartPosition, type Event } from "./gen/tasker/v1/event_pb.js";
export { StepView } from "./gen/tasker/v1/step_pb.js";
export { TaskService } from "./gen/tasker/v1/task_pb.js";
export { StepService } from "./gen/tasker/v1/step_pb.js";
export { RegistryService } from "./gen/tasker/v1/registry_pb.js";
export { EventService } from "./gen/tasker/v1/event_pb.js";
