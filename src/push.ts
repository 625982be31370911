/**
 * Push mode: run Celery task messages delivered by HTTP instead of fetched from a broker,
 * for serverless platforms (`Deno.serve`, Deno Deploy, a queue's push subscription).
 *
 * A POST body is one task message, as JSON, in either form:
 *
 * - a kombu Redis envelope, exactly as it sits in a Redis list
 *   (`{"body": "<base64>", "headers": …, "properties": {"delivery_tag": …, …}, …}`);
 * - `{"headers": …, "properties": …, "body": [args, kwargs, embed]}` (protocol v2 headers,
 *   the body as plain JSON).
 *
 * The answer is the Celery result record as JSON (`{"status", "result", "traceback",
 * "children", "date_done", "task_id"}`), also stored in the app's result backend when it has
 * one, with the status code:
 *
 * | status | when |
 * | --- | --- |
 * | 200 | SUCCESS |
 * | 500 | FAILURE: the task threw; `result` is the serialized exception |
 * | 404 | FAILURE `NotRegistered`: no task of that name in the app |
 * | 410 | REVOKED: the message's `expires` has passed (not run) |
 * | 425 | the message has an ETA in the future (not run; deliver it at its ETA) |
 * | 400 | the body is not a task message: `{"error", "exc_type"}`, nothing run |
 * | 405 | not a POST |
 * | 503 | the task ran but its result could not be stored (deliver again) |
 *
 * @module
 */

import type { App } from "./app.ts";
import type { Delivery } from "./brokers/broker.ts";
import { DecodeError, TaskNotRegisteredError } from "./errors.ts";
import { hostName } from "./host.ts";
import {
  formatTraceback,
  type SerializedException,
  serializeException,
} from "./protocol/exception.ts";
import { parseJson, stringifyJson } from "./protocol/json.ts";
import { encodeJsonBody, JSON_CONTENT_TYPE, type TransportMessage } from "./protocol/message.ts";
import { decodeRedisEnvelope } from "./protocol/redis_envelope.ts";
import { buildResultMeta, type ResultMeta, revokedException } from "./protocol/result.ts";
import type { TaskMessage } from "./protocol/task.ts";
import { buildContext, execute } from "./worker/executor.ts";
import { triage } from "./worker/request.ts";

/** Options of {@linkcode createPushHandler}. */
export interface PushOptions {
  /** Node name tasks see as `ctx.hostname`. @default `celeriac-push@<host>` */
  name?: string;
}

/** A request handler for `Deno.serve`. */
export type PushHandler = (request: Request) => Promise<Response>;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function json(status: number, value: unknown): Response {
  return new Response(stringifyJson(value) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

function badRequest(error: DecodeError): Response {
  return json(400, { error: error.message, exc_type: error.name });
}

/**
 * Reads a POST body into a transport message.
 *
 * @throws {DecodeError} When it is not JSON or not one of the two accepted forms.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecodeError } from "./errors.ts";
 * import { readPushedMessage } from "./push.ts";
 * const m = readPushedMessage('{"headers":{"id":"1","task":"t"},"body":[[1],{},{}]}');
 * assert.equal(new TextDecoder().decode(m.body), "[[1],{},{}]");
 * assert.throws(() => readPushedMessage("[]"), DecodeError);
 * ```
 */
export function readPushedMessage(text: string): TransportMessage {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch (cause) {
    throw new DecodeError(
      `Cannot parse request body as JSON: ${(cause as Error).message}`,
      text,
      { cause },
    );
  }
  if (isObject(value) && typeof value.body === "string") return decodeRedisEnvelope(text).message;
  if (isObject(value) && Array.isArray(value.body)) {
    if (!isObject(value.headers)) {
      throw new DecodeError("Cannot read task message: 'headers' must be an object", text);
    }
    if (value.properties !== undefined && !isObject(value.properties)) {
      throw new DecodeError("Cannot read task message: 'properties' must be an object", text);
    }
    return {
      headers: value.headers,
      properties: (value.properties as Record<string, unknown> | undefined) ?? {},
      contentType: JSON_CONTENT_TYPE,
      contentEncoding: "utf-8",
      body: encodeJsonBody(value.body),
    };
  }
  throw new DecodeError(
    "Cannot read task message: expected a kombu Redis envelope ('body' a base64 string) or " +
      "{headers, properties, body: [args, kwargs, embed]}",
    text,
  );
}

/**
 * Builds the push handler of an app (what `app.handler()` returns). Serve it with
 * `Deno.serve(app.handler())`.
 *
 * @example Run a pushed message
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "../mod.ts";
 * import { createPushHandler } from "./push.ts";
 * const app = createApp({ broker: "memory://push-doc", backend: null });
 * app.task("tasks.add", (x: number, y: number) => x + y);
 * const handler = createPushHandler(app); // Deno.serve(handler) in a server
 * const response = await handler(new Request("http://localhost/", {
 *   method: "POST",
 *   body: '{"headers":{"id":"1","task":"tasks.add"},"properties":{},"body":[[2,3],{},{}]}',
 * }));
 * assert.equal(response.status, 200);
 * assert.equal((await response.json()).result, 5);
 * ```
 */
export function createPushHandler(app: App, options: PushOptions = {}): PushHandler {
  const name = options.name ?? `celeriac-push@${hostName()}`;

  async function record(
    taskId: string,
    status: string,
    result: unknown,
    message: TaskMessage | undefined,
    traceback: string | null,
    store: boolean,
  ): Promise<{ meta: ResultMeta; text: string } | Response> {
    let meta = buildResultMeta({
      taskId,
      status,
      result,
      traceback,
      groupId: message?.group ?? null,
      parentId: message?.parentId ?? null,
    }, new Date());
    let text: string;
    try {
      text = stringifyJson(meta);
    } catch (err) {
      const error = Object.assign(
        new Error(`Cannot serialize the result of task "${taskId}": ${(err as Error).message}`),
        { excType: "EncodeError", excModule: "kombu.exceptions" },
      );
      meta = buildResultMeta({
        taskId,
        status: "FAILURE",
        result: serializeException(error),
        traceback: formatTraceback(error),
      }, new Date());
      text = stringifyJson(meta);
    }
    if (store) {
      try {
        const backend = await app.backend();
        await backend?.store(meta);
      } catch (err) {
        return json(503, {
          error: `Cannot store result of task "${taskId}" (${meta.status}): ${
            (err as Error)?.message ?? err
          }`,
          exc_type: (err as Error)?.name ?? "Error",
          task_id: taskId,
        });
      }
    }
    return { meta, text };
  }

  function answer(
    status: number,
    outcome: { meta: ResultMeta; text: string } | Response,
  ): Response {
    if (outcome instanceof Response) return outcome;
    const code = outcome.meta.status === "FAILURE" && status === 200 ? 500 : status;
    return new Response(outcome.text + "\n", {
      status: code,
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  }

  return async (request: Request): Promise<Response> => {
    if (request.method !== "POST") {
      return json(405, { error: `Cannot ${request.method} here: POST a task message` });
    }
    const text = await request.text();
    let message: TransportMessage;
    try {
      message = readPushedMessage(text);
    } catch (err) {
      if (err instanceof DecodeError) return badRequest(err);
      throw err;
    }
    const delivery: Delivery = {
      message,
      queue: message.deliveryInfo?.routingKey || "push",
      raw: text,
      redelivered: false,
      ack: () => Promise.resolve(),
      requeue: () => Promise.resolve(),
      deadLetter: () => Promise.resolve(),
    };
    const decision = triage(delivery, app.tasks, new Date());
    switch (decision.kind) {
      case "reject": {
        const err = decision.error;
        if (err instanceof TaskNotRegisteredError) {
          const exc: SerializedException = {
            exc_type: "NotRegistered",
            exc_message: [err.taskName],
            exc_module: "celery.exceptions",
          };
          return answer(
            404,
            await record(decision.taskId!, "FAILURE", exc, decision.message, null, true),
          );
        }
        if (decision.taskId) {
          const stored = await record(
            decision.taskId,
            "FAILURE",
            {
              exc_type: "InvalidTaskError",
              exc_message: [err.message],
              exc_module: "celery.exceptions",
            },
            undefined,
            null,
            true,
          );
          if (stored instanceof Response) return stored;
        }
        return json(400, {
          error: err.message,
          exc_type: err.name,
          ...(decision.taskId ? { task_id: decision.taskId } : {}),
        });
      }
      case "expired": {
        const m = decision.request.message;
        return answer(
          410,
          await record(m.id, "REVOKED", revokedException("expired"), m, null, true),
        );
      }
      case "later":
        return json(425, {
          error:
            `Cannot run task "${decision.request.message.id}" yet: its ETA is ${decision.eta.toISOString()}; push it again then`,
          task_id: decision.request.message.id,
          eta: decision.eta.toISOString(),
        });
      case "run": {
        const { message: m, task } = decision.request;
        // The task runs to its end even when the client goes away (its result is still
        // stored). Not wired to request.signal: reading it makes Deno.serve print a warning.
        const ctx = buildContext(decision.request, app, name, new AbortController().signal);
        let outcome;
        try {
          const args = task.bindArguments(m.args, m.kwargs, ctx);
          outcome = await execute(task.fn as (...a: unknown[]) => unknown, args, ctx);
        } catch (error) {
          outcome = { ok: false as const, error, runtimeMs: 0 };
        }
        const store = !(m.ignoreResult || (task.options.ignoreResult ?? false));
        return answer(
          200,
          outcome.ok ? await record(m.id, "SUCCESS", outcome.value, m, null, store) : await record(
            m.id,
            "FAILURE",
            serializeException(outcome.error),
            m,
            formatTraceback(outcome.error),
            store,
          ),
        );
      }
    }
  };
}
