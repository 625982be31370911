/**
 * The script each Web Worker of the thread pool runs: it imports a task module, calls one
 * export with the arguments, and posts back the value or the error.
 *
 * @module
 */

/// <reference lib="deno.worker" />

interface Job {
  id: number;
  module: string;
  exportName: string;
  args: unknown[];
}

self.onmessage = async (event: MessageEvent<Job>) => {
  const { id, module, exportName, args } = event.data;
  try {
    const mod = await import(module);
    const fn = mod[exportName];
    if (typeof fn !== "function") {
      throw new TypeError(
        `Cannot run "${exportName}" from ${module}: it is not an exported function`,
      );
    }
    const value = await fn(...args);
    self.postMessage({ id, ok: true, value });
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    self.postMessage({
      id,
      ok: false,
      error: { name: e.name, message: e.message, stack: e.stack },
    });
  }
};
