/**
 * celeriac imported by URL, as a user without a `deno.json` does: the repository is served
 * over HTTP on a loopback port and a script in an empty temporary directory imports
 * `http://127.0.0.1:<port>/mod.ts`, runs with `--no-config`, a fresh `DENO_DIR` and only
 * the permissions it needs. An import map would not apply there, so this fails on any bare
 * specifier (`"@std/…"`, `"amqplib"`) anywhere in the graph, including the drivers loaded
 * dynamically (the embedded store's `./sqlite.ts`).
 */

import assert from "node:assert/strict";
import { extname, join, normalize } from "node:path";
import { REPO_ROOT } from "./helpers/python_celery.ts";
import { runChild } from "./helpers/process.ts";

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
};

/** Serves files of the repository root; 404 outside it. */
function serveRepo(): { port: number; served: string[]; server: Deno.HttpServer<Deno.NetAddr> } {
  const served: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = normalize(decodeURIComponent(new URL(request.url).pathname));
    const file = join(REPO_ROOT, path);
    if (!file.startsWith(REPO_ROOT + "/") || path.includes("..")) {
      return new Response("forbidden", { status: 403 });
    }
    try {
      const body = await Deno.readFile(file);
      served.push(path);
      return new Response(body, {
        headers: { "content-type": TYPES[extname(file)] ?? "application/octet-stream" },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { port: server.addr.port, served, server };
}

const SCRIPT = (base: string) => `
import { createApp, Worker } from "${base}/mod.ts";

for (const broker of ["memory://url-import", "sqlite://./store/celeriac.db"]) {
  const app = createApp({ broker });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const worker = new Worker(app, { logLevel: "critical", fetchTimeoutMs: 100 });
  await worker.start();
  const result = await add.delay(2, 3);
  console.log(\`\${broker.split(":")[0]} result \${await result.get({ timeout: 10 })}\`);
  await worker.stop();
  await app.close();
}
`;

Deno.test("mod.ts imported by URL (no deno.json, fresh DENO_DIR) runs tasks on memory:// and sqlite://", async () => {
  const { port, served, server } = serveRepo();
  const dir = await Deno.makeTempDir({ prefix: "celeriac-url-import-" });
  try {
    const base = `http://127.0.0.1:${port}`;
    await Deno.writeTextFile(join(dir, "main.ts"), SCRIPT(base));
    const run = await runChild(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        "--no-lock",
        `--allow-import=127.0.0.1:${port}`,
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        "main.ts",
      ],
      cwd: dir,
      env: { DENO_DIR: join(dir, "deno_dir"), NO_COLOR: "1" },
      timeoutMs: 60_000,
      label: "url import",
    });
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.deepEqual(run.stdout.trim().split("\n"), ["memory result 5", "sqlite result 5"]);
    assert.ok(served.includes("/mod.ts"));
    assert.ok(served.includes("/src/brokers/sqlite.ts"), "the dynamic import was loaded by URL");
    assert.ok(served.includes("/src/backends/sqlite.ts"));
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

interface InfoModule {
  specifier: string;
  error?: string;
  dependencies?: { specifier: string; code?: { error?: string }; type?: { error?: string } }[];
}

Deno.test("every module reachable from the entry points (dynamic imports included) resolves by URL", async () => {
  const { port, server } = serveRepo();
  const dir = await Deno.makeTempDir({ prefix: "celeriac-url-info-" });
  try {
    const base = `http://127.0.0.1:${port}`;
    const config = JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json")));
    const entries: string[] = [];
    for (const path of Object.values(config.exports) as string[]) {
      if (await Deno.stat(join(REPO_ROOT, path)).then(() => true, () => false)) entries.push(path);
    }
    assert.ok(entries.includes("./mod.ts") && entries.includes("./worker.ts"));
    const problems: string[] = [];
    for (const entry of entries) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "info",
          "--json",
          "--no-config",
          "--no-lock",
          `--allow-import=127.0.0.1:${port}`,
          `${base}/${entry.slice(2)}`,
        ],
        cwd: dir,
        env: { DENO_DIR: join(dir, "deno_dir"), NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
      for (const m of info.modules) {
        const errors = [
          m.error,
          ...(m.dependencies ?? []).flatMap((d) => [d.code?.error, d.type?.error]),
        ]
          .filter((e): e is string => !!e);
        for (const error of errors) {
          // A module another change has not written yet is not a specifier problem.
          const missing = /^Module not found "http:\/\/127\.0\.0\.1:\d+\/([^"]+)"/.exec(error);
          if (
            missing &&
            !(await Deno.stat(join(REPO_ROOT, missing[1]!)).then(() => true, () => false))
          ) {
            continue;
          }
          problems.push(`${entry}: ${m.specifier}: ${error}`);
        }
      }
    }
    assert.deepEqual(problems, []);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
