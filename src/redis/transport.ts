/**
 * The byte stream under a Redis connection: `Deno.connect` for `redis://` (no Node
 * compatibility layer loaded), `node:tls` for `rediss://` (the one TLS client that can skip
 * certificate checks, which `?ssl_cert_reqs=none` asks for).
 *
 * @module
 */

/** What a connection reads and writes through. */
export interface ByteStream {
  /** Reads into `into`; resolves the byte count, or `null` at the end of the stream. */
  read(into: Uint8Array): Promise<number | null>;
  /** Writes all of `bytes`. */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes at once (pending reads end). */
  close(): void;
}

/** Where and how to connect. */
export interface StreamTarget {
  /** Host name or address. */
  host: string;
  /** Port. */
  port: number;
  /** TLS. */
  tls?: boolean;
  /** TLS without verifying the server's certificate. */
  insecureTls?: boolean;
}

class TcpStream implements ByteStream {
  #conn: Deno.TcpConn;
  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }
  read(into: Uint8Array): Promise<number | null> {
    return this.#conn.read(into);
  }
  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.#conn.write(bytes.subarray(at));
  }
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

type NodeSocket = {
  on(event: string, fn: (...args: never[]) => void): void;
  write(bytes: Uint8Array, done: (err?: Error | null) => void): boolean;
  destroy(): void;
  pause(): void;
  resume(): void;
};

/** A node:tls socket behind the same read/write calls. */
class NodeStream implements ByteStream {
  #socket: NodeSocket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error?: Error;
  #wake?: () => void;

  constructor(socket: NodeSocket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#wake?.();
    });
    const end = (err?: Error) => {
      this.#ended = true;
      this.#error ??= err;
      this.#wake?.();
    };
    socket.on("end", () => end());
    socket.on("close", () => end());
    socket.on("error", (err: Error) => end(err));
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (!this.#chunks.length) {
      if (this.#ended) {
        if (this.#error) throw this.#error;
        return null;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const chunk = this.#chunks[0]!;
    const n = Math.min(chunk.length, into.length);
    into.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }

  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (err) => err ? reject(err) : resolve());
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

async function connectTls(target: StreamTarget): Promise<ByteStream> {
  const tls = await import("node:tls");
  return await new Promise<ByteStream>((resolve, reject) => {
    const socket = tls.connect({
      host: target.host,
      port: target.port,
      servername: /^[\d.]+$|:/.test(target.host) ? undefined : target.host,
      rejectUnauthorized: !target.insecureTls,
    });
    const fail = (err: Error) => reject(err);
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      socket.off("error", fail);
      socket.setNoDelay(true);
      resolve(new NodeStream(socket as unknown as NodeSocket));
    });
  });
}

/**
 * Opens a stream, failing after `timeoutMs`.
 *
 * @throws The runtime's own error (`ConnectionRefused`, `NotCapable`, a TLS error), or a
 *   `TimedOut` error after `timeoutMs`.
 *
 * @example
 * ```ts ignore
 * const stream = await openStream({ host: "127.0.0.1", port: 6379 }, 5000);
 * await stream.write(new TextEncoder().encode("PING\r\n"));
 * ```
 */
export async function openStream(target: StreamTarget, timeoutMs: number): Promise<ByteStream> {
  const opening: Promise<ByteStream> = target.tls
    ? connectTls(target)
    : Deno.connect({ hostname: target.host, port: target.port, transport: "tcp" }).then(
      (conn) => {
        conn.setNoDelay(true);
        return new TcpStream(conn);
      },
    );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Deno.errors.TimedOut(`no connection within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([opening, timeout]);
  } catch (err) {
    opening.then((late) => late.close(), () => {}); // a connect that lands after the timeout
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
