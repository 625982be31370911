/**
 * The event fixtures of shared/fixtures/celery-5.2 (real Celery 5.2.6 traffic), as transport
 * messages: Redis ones decoded from the exact published envelope, AMQP ones rebuilt from the
 * captured properties, headers and raw body.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { CeleryEvent } from "../../src/events/event.ts";
import type { TransportMessage } from "../../src/protocol/message.ts";
import { decodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";

const DIR = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);

/** One event fixture. */
export interface EventFixture {
  /** File name without `.json`. */
  name: string;
  /** `redis` or `amqp`. */
  transport: "redis" | "amqp";
  /** The message as a broker delivers it. */
  message: TransportMessage;
  /** The decoded body: one event or a batch. */
  body: CeleryEvent | CeleryEvent[];
  /** The event of the fixture's type (an element of the batch). */
  event: CeleryEvent;
  /** Exact envelope properties (Redis only). */
  envelopeProperties?: Record<string, unknown>;
}

/** Every `*-event-*.json` fixture, sorted by name. */
export function eventFixtures(): EventFixture[] {
  return [...Deno.readDirSync(DIR)].map((e) => e.name)
    .filter((n) => /^(redis|amqp)-event-.*\.json$/.test(n)).sort()
    .map((file) => {
      // deno-lint-ignore no-explicit-any
      const f: Record<string, any> = JSON.parse(Deno.readTextFileSync(new URL(file, DIR)));
      const name = file.replace(/\.json$/, "");
      if (f.transport === "redis") {
        return {
          name,
          transport: "redis" as const,
          message: decodeRedisEnvelope(f.raw).message,
          body: f.body,
          event: f.event,
          envelopeProperties: f.envelope.properties,
        };
      }
      return {
        name,
        transport: "amqp" as const,
        message: {
          headers: f.headers,
          properties: f.properties,
          contentType: f.properties.content_type,
          contentEncoding: f.properties.content_encoding,
          body: new Uint8Array(Buffer.from(f.body, "utf8")),
          deliveryInfo: {
            exchange: f.delivery_info.exchange,
            routingKey: f.delivery_info.routing_key,
          },
        },
        body: f.body_decoded,
        event: f.event,
      };
    });
}
