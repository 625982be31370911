/**
 * The pure protocol layer: encode and decode Celery protocol v2 task messages, kombu's Redis
 * envelope, result records and serialized exceptions. No I/O, no clock, no configuration.
 *
 * @module
 */
export * from "./json.ts";
export * from "./message.ts";
export * from "./task.ts";
export * from "./redis_envelope.ts";
export * from "./result.ts";
export * from "./exception.ts";
export * from "./repr.ts";
export * from "./time.ts";
