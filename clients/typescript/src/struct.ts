import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * JSON documents (contexts, configs, results, payloads) travel as
 * google.protobuf.Struct. The generated code represents a Struct field as a
 * JsonObject, so these helpers only make sure a value survives the trip:
 *
 * - every number is a double on the wire: integers are exact up to 2^53,
 *   a bigint is refused, and NaN or an infinity is refused (the server
 *   rejects them too);
 * - what JSON.stringify would do is done: a Date becomes its ISO string,
 *   toJSON() is honoured, undefined members are dropped.
 */
export type { JsonObject, JsonValue };

/** toStruct checks and converts a plain object into a JsonObject for a Struct field. */
export function toStruct(value: object | undefined | null): JsonObject {
  if (value === undefined || value === null) {
    return {};
  }
  const out = toJsonValue(value, "$");
  if (out === null || typeof out !== "object" || Array.isArray(out)) {
    throw new TypeError("tasker: a document must be a JSON object");
  }
  return out;
}

/** toJsonValue converts value the way JSON.stringify would, refusing what JSON cannot carry exactly. */
export function toJsonValue(value: unknown, path = "$"): JsonValue {
  if (value !== null && typeof value === "object" && typeof (value as { toJSON?: unknown }).toJSON === "function") {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) {
        throw new TypeError(`tasker: ${path} is ${value}; a document number must be finite`);
      }
      return value;
    case "bigint":
      throw new TypeError(`tasker: ${path} is a bigint; document numbers are doubles, send it as a string`);
    case "object": {
      if (value === null) {
        return null;
      }
      if (Array.isArray(value)) {
        return value.map((v, i) => (v === undefined || typeof v === "function" ? null : toJsonValue(v, `${path}[${i}]`)));
      }
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(value)) {
        if (v === undefined || typeof v === "function" || typeof v === "symbol") {
          continue;
        }
        out[k] = toJsonValue(v, `${path}.${k}`);
      }
      return out;
    }
    default:
      throw new TypeError(`tasker: ${path} is a ${typeof value}, which JSON cannot carry`);
  }
}

/** fromStruct returns a Struct field's document, {} when the field is unset. */
export function fromStruct(value: JsonObject | undefined): JsonObject {
  return value ?? {};
}
