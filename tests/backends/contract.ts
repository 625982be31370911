/**
 * The result backend contract, run against every backend.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ResultBackend } from "../../src/backends/backend.ts";
import { ResultTimeoutError } from "../../src/errors.ts";
import { buildResultMeta } from "../../src/protocol/result.ts";

/** Registers the contract cases for one backend. */
export function runBackendContract(
  name: string,
  create: () => Promise<{ backend: ResultBackend; cleanup(): Promise<void> }>,
): void {
  const cases: Record<string, (b: ResultBackend) => Promise<void>> = {
    "store then get": async (b) => {
      assert.equal(await b.get("t1"), null);
      await b.store(
        buildResultMeta({ taskId: "t1", status: "SUCCESS", result: { a: [1, 2] } }, new Date()),
      );
      const meta = await b.get("t1");
      assert.equal(meta?.status, "SUCCESS");
      assert.deepEqual(meta?.result, { a: [1, 2] });
    },
    "a stored SUCCESS is never overwritten": async (b) => {
      await b.store(buildResultMeta({ taskId: "t2", status: "SUCCESS", result: 1 }, new Date()));
      await b.store(buildResultMeta({ taskId: "t2", status: "FAILURE", result: null }, new Date()));
      assert.equal((await b.get("t2"))?.status, "SUCCESS");
    },
    "waitFor wakes on a ready state stored later, not on RETRY": async (b) => {
      const waiting = b.waitFor("t3", { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 50));
      await b.store(buildResultMeta({ taskId: "t3", status: "RETRY", result: null }, new Date()));
      await b.store(
        buildResultMeta({ taskId: "t3", status: "FAILURE", result: { exc_type: "E" } }, new Date()),
      );
      assert.equal((await waiting).status, "FAILURE");
    },
    "waitFor returns a result stored before the wait": async (b) => {
      await b.store(buildResultMeta({ taskId: "t4", status: "SUCCESS", result: 4 }, new Date()));
      assert.equal((await b.waitFor("t4", { timeoutMs: 1000 })).result, 4);
    },
    "waitFor times out with ResultTimeoutError": async (b) => {
      await assert.rejects(() => b.waitFor("never", { timeoutMs: 100 }), ResultTimeoutError);
    },
    "forget deletes the record": async (b) => {
      await b.store(buildResultMeta({ taskId: "t5", status: "SUCCESS", result: 5 }, new Date()));
      await b.forget("t5");
      assert.equal(await b.get("t5"), null);
    },
  };
  for (const [caseName, run] of Object.entries(cases)) {
    Deno.test(`${name} backend contract: ${caseName}`, async () => {
      const { backend, cleanup } = await create();
      try {
        await run(backend);
      } finally {
        await cleanup();
      }
    });
  }
}
