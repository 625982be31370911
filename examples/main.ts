/**
 * A worker program with its tasks compiled in, for `deno compile` (a standalone binary cannot
 * import an `--app` module at run time that was not compiled into it):
 *
 * ```sh
 * deno task compile                      # → dist/celeriac-worker (see docs/compile.md)
 * ./dist/celeriac-worker -c 20 --burst   # same flags as worker.ts, --app not needed
 * deno run -A examples/main.ts --burst   # the same program without compiling
 * ```
 *
 * The pattern: import your app module statically (so the compiler sees it) and hand the app
 * to `runWorkerCli`. Without `--broker`, an app that sets no broker runs on the embedded
 * store `./.celeriac/celeriac.db`.
 *
 * @module
 */

import { runWorkerCli } from "../worker.ts";
import { app } from "./interop/tasks.ts";

if (import.meta.main) {
  Deno.exit(await runWorkerCli(Deno.args, { app }));
}
