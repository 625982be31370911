/**
 * `amqp://` and `amqps://` URLs as kombu reads them: `amqp://user:pass@host:port/vhost`,
 * where an empty path or `//` means the default vhost `/` and `%2F` is a slash.
 *
 * @module
 */

import { ConfigError } from "../../errors.ts";
import { redactUrl } from "../mod.ts";

/** A parsed AMQP URL. */
export interface AmqpTarget {
  /** Host as written (brackets of an IPv6 address removed). @default "localhost" */
  host: string;
  /** Port. @default 5672 (5671 for amqps) */
  port: number;
  /** Virtual host. @default "/" */
  vhost: string;
  /** User name. @default "guest" */
  username: string;
  /** Password. @default "guest" */
  password: string;
  /** `amqps://`. */
  tls: boolean;
  /** `?ssl_cert_reqs=none` (Celery's spelling): do not verify the server certificate. */
  insecureTls: boolean;
  /** `?ssl_ca_certs=<path>` (Celery's spelling): PEM file of the CAs to trust (amqps). */
  caFile?: string;
  /** Heartbeat seconds (`?heartbeat=N`, 0 = off). @default 60 */
  heartbeat: number;
  /** Seconds to wait for the TCP and AMQP handshake (`?connect_timeout=N`). @default 10 */
  connectTimeout: number;
  /** The URL with the password hidden. */
  display: string;
}

const KNOWN_PARAMS = ["heartbeat", "connect_timeout", "ssl_cert_reqs", "ssl_ca_certs"];

function nonNegative(url: string, params: URLSearchParams, name: string, fallback: number) {
  const text = params.get(name);
  if (text === null) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !(value >= 0) || !Number.isFinite(value)) {
    throw new ConfigError(
      `Cannot use AMQP URL "${
        redactUrl(url)
      }": ${name} must be a number of seconds >= 0, got "${text}"`,
    );
  }
  return value;
}

/**
 * Parses `amqp://[user[:password]@]host[:port][/vhost][?heartbeat=N&connect_timeout=N]` and
 * `amqps://…[?ssl_cert_reqs=none|ssl_ca_certs=<pem file>]`.
 *
 * @throws {ConfigError} For a URL that is not an AMQP URL or has an unknown or bad parameter.
 *
 * @example kombu's spellings of the default vhost
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAmqpUrl } from "./url.ts";
 * const t = parseAmqpUrl("amqp://guest:secret@127.0.0.1:5673//");
 * assert.deepEqual([t.host, t.port, t.vhost, t.username], ["127.0.0.1", 5673, "/", "guest"]);
 * assert.equal(t.display, "amqp://guest:**@127.0.0.1:5673//");
 * assert.equal(parseAmqpUrl("amqp://h").vhost, "/");
 * assert.equal(parseAmqpUrl("amqp://h/%2F").vhost, "/");
 * assert.equal(parseAmqpUrl("amqps://h/prod").port, 5671);
 * assert.equal(parseAmqpUrl("amqps://h/prod").vhost, "prod");
 * ```
 */
export function parseAmqpUrl(url: string): AmqpTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new ConfigError(`Cannot parse AMQP URL "${redactUrl(url)}"`, { cause });
  }
  if (parsed.protocol !== "amqp:" && parsed.protocol !== "amqps:") {
    throw new ConfigError(
      `Cannot use "${redactUrl(url)}" as an AMQP URL: scheme must be amqp:// or amqps://`,
    );
  }
  const params = new URLSearchParams(parsed.search);
  for (const name of params.keys()) {
    if (!KNOWN_PARAMS.includes(name)) {
      throw new ConfigError(
        `Cannot use AMQP URL "${redactUrl(url)}": unknown parameter "${name}" (known: ${
          KNOWN_PARAMS.join(", ")
        })`,
      );
    }
  }
  const certReqs = params.get("ssl_cert_reqs");
  if (certReqs !== null && !/^(CERT_)?(required|optional|none)$/i.test(certReqs)) {
    throw new ConfigError(
      `Cannot use AMQP URL "${
        redactUrl(url)
      }": ssl_cert_reqs must be required, optional or none, got "${certReqs}"`,
    );
  }
  // kombu: the path minus its first slash, unquoted; empty means "/" (so "//" is "/").
  const path = parsed.pathname.slice(1);
  const vhost = decodeURIComponent(path) || "/";
  const tls = parsed.protocol === "amqps:";
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, "") || "localhost",
    port: parsed.port ? Number(parsed.port) : tls ? 5671 : 5672,
    vhost,
    username: parsed.username ? decodeURIComponent(parsed.username) : "guest",
    password: parsed.password ? decodeURIComponent(parsed.password) : "guest",
    tls,
    insecureTls: /none$/i.test(certReqs ?? ""),
    caFile: params.get("ssl_ca_certs") || undefined,
    heartbeat: nonNegative(url, params, "heartbeat", 60),
    connectTimeout: nonNegative(url, params, "connect_timeout", 10),
    display: redactUrl(url),
  };
}
