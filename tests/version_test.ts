/** One version everywhere: deno.json, src/version.ts (events' `sw_ver`), worker.ts's banner. */

import assert from "node:assert/strict";
import { VERSION } from "../src/version.ts";
import { VERSION as WORKER_VERSION } from "../worker.ts";

Deno.test("version: deno.json, src/version.ts and worker.ts agree", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(VERSION, config.version);
  assert.equal(WORKER_VERSION, VERSION);
});
