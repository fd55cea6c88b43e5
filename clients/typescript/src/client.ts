import { readFileSync } from "node:fs";
import { create, createFileRegistry, type DescService } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { toTaskerError } from "./errors.js";
import { EventService } from "./gen/tasker/v1/event_pb.js";
import { RegistryService } from "./gen/tasker/v1/registry_pb.js";
import { StepService } from "./gen/tasker/v1/step_pb.js";
import { TaskService } from "./gen/tasker/v1/task_pb.js";

/** The metadata key of correlation ids. */
export const CORRELATION_HEADER = "x-correlation-id";

/** PEM contents, or a path to a PEM file. */
export type Pem = string | Buffer | { path: string };

/** TLS settings of a connection. Without them the connection is plaintext (h2c). */
export interface TlsOptions {
  /** The CA that signed the server's certificate; the system roots when unset. */
  ca?: Pem;
  /** Client certificate, for a server that requires mutual TLS. */
  cert?: Pem;
  /** Key of cert. */
  key?: Pem;
  /** The name to verify the server's certificate against, when it differs from the address's host. */
  serverName?: string;
}

/** Options of a TaskerClient. */
export interface ClientOptions {
  /** host:port of the server (127.0.0.1:50051), or an http:// or https:// URL. */
  address: string;
  /** API token, sent as "authorization: Bearer <token>" on every call. */
  token?: string;
  /** TLS; true uses the system roots. An https:// address implies it. */
  tls?: TlsOptions | boolean;
  /** A correlation id sent in x-correlation-id on every call that does not set its own. */
  correlationId?: string;
  /** Deadline of each unary call in milliseconds, unless the call sets timeoutMs; none by default. */
  defaultTimeoutMs?: number;
  /** Interceptors run after the client's own (authorization, correlation, typed errors). */
  interceptors?: Interceptor[];
}

function readPem(p: Pem | undefined): string | Buffer | undefined {
  if (p === undefined) {
    return undefined;
  }
  if (typeof p === "object" && "path" in p) {
    return readFileSync(p.path);
  }
  return p;
}

/**
 * TaskerClient holds one HTTP/2 connection to a Tasker server (the gRPC
 * protocol, through @connectrpc/connect-node) and a typed client per
 * service. Every call throws a TaskerError (the subclass of its ErrorInfo
 * reason) on failure.
 *
 *     const client = new TaskerClient({ address: "127.0.0.1:50051", token });
 *     const { task } = await client.tasks.createTask({ namespace: "demo", name: "diamond" });
 */
export class TaskerClient {
  readonly transport: Transport;
  readonly tasks: Client<typeof TaskService>;
  readonly steps: Client<typeof StepService>;
  readonly registry: Client<typeof RegistryService>;
  readonly events: Client<typeof EventService>;
  private readonly health: HealthClient;

  constructor(readonly options: ClientOptions) {
    const tls = options.tls === true ? {} : options.tls || undefined;
    let baseUrl = options.address;
    if (!/^https?:\/\//.test(baseUrl)) {
      baseUrl = `${tls ? "https" : "http"}://${baseUrl}`;
    }
    const secure = baseUrl.startsWith("https://");
    const interceptors: Interceptor[] = [typedErrors, headers(options.token, options.correlationId), ...(options.interceptors ?? [])];
    this.transport = createGrpcTransport({
      baseUrl,
      interceptors,
      defaultTimeoutMs: options.defaultTimeoutMs,
      nodeOptions: secure
        ? {
            ca: readPem(tls?.ca),
            cert: readPem(tls?.cert),
            key: readPem(tls?.key),
            servername: tls?.serverName,
          }
        : {},
    });
    this.tasks = createClient(TaskService, this.transport);
    this.steps = createClient(StepService, this.transport);
    this.registry = createClient(RegistryService, this.transport);
    this.events = createClient(EventService, this.transport);
    this.health = createClient(HealthService, this.transport) as unknown as HealthClient;
  }

  /**
   * checkHealth asks the server's grpc.health.v1 service whether it serves
   * (service "" is the whole server) and returns true for SERVING.
   */
  async checkHealth(service = "", options?: CallOptions): Promise<boolean> {
    const res = await this.health.check({ service }, options);
    return res.status === SERVING;
  }
}

/**
 * Correlation sends a correlation id with the calls it is passed to, and
 * keeps the one the server answered (the id sent, or the one the server
 * generated when none was):
 *
 *     const corr = new Correlation("order-42");
 *     await client.tasks.createTask(req, corr.options);
 *     corr.id; // "order-42"
 *     const fresh = new Correlation();
 *     await client.tasks.createTask(req, fresh.options);
 *     fresh.id; // the server's
 */
export class Correlation {
  /** The id to send, then the id the server answered with. */
  id: string | undefined;

  constructor(id?: string) {
    this.id = id;
  }

  /** Call options that send the id and record the server's. */
  get options(): CallOptions {
    const headers: Record<string, string> = {};
    if (this.id) {
      headers[CORRELATION_HEADER] = this.id;
    }
    return {
      headers,
      onHeader: (h) => {
        const got = h.get(CORRELATION_HEADER);
        if (got) {
          this.id = got;
        }
      },
    };
  }
}

/** headers adds authorization and the default correlation id. */
function headers(token: string | undefined, correlationId: string | undefined): Interceptor {
  return (next) => (req) => {
    if (token && !req.header.has("authorization")) {
      req.header.set("authorization", `Bearer ${token}`);
    }
    if (correlationId && !req.header.has(CORRELATION_HEADER)) {
      req.header.set(CORRELATION_HEADER, correlationId);
    }
    return next(req);
  };
}

/** typedErrors turns every error of a call, or of a stream's messages, into a TaskerError. */
const typedErrors: Interceptor = (next) => async (req) => {
  let res;
  try {
    res = await next(req);
  } catch (err) {
    throw toTaskerError(err);
  }
  if (!res.stream) {
    return res;
  }
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      try {
        yield* messages;
      } catch (err) {
        throw toTaskerError(err);
      }
    })(),
  };
};

// grpc.health.v1.Health, described here rather than generated: the
// contract does not import it and no pinned package ships it.
const SERVING = 1;
const healthFile = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "grpc/health/v1/health.proto",
    package: "grpc.health.v1",
    syntax: "proto3",
    messageType: [
      {
        name: "HealthCheckRequest",
        field: [{ name: "service", jsonName: "service", number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING }],
      },
      {
        name: "HealthCheckResponse",
        // An enum (ServingStatus) in the original; the same varint on the wire.
        field: [{ name: "status", jsonName: "status", number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.INT32 }],
      },
    ],
    service: [
      {
        name: "Health",
        method: [{ name: "Check", inputType: ".grpc.health.v1.HealthCheckRequest", outputType: ".grpc.health.v1.HealthCheckResponse" }],
      },
    ],
  }),
  () => undefined,
);
const HealthService = healthFile.getService("grpc.health.v1.Health") as DescService;

interface HealthClient {
  check(req: { service: string }, options?: CallOptions): Promise<{ status?: number }>;
}
