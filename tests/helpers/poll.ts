/**
 * Test helper: wait for a condition by polling with a deadline, instead of a fixed sleep.
 *
 * @module
 */

/**
 * Polls `cond` every `intervalMs` until it returns (or resolves to) a truthy value.
 *
 * @throws {Error} When `timeoutMs` passes first; the message says what was waited for.
 */
export async function pollUntil(
  cond: () => unknown | Promise<unknown>,
  options: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${options.message ?? cond}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
  }
}
