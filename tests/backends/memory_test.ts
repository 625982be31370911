import { MemoryBackend } from "../../src/backends/memory.ts";
import { runBackendContract } from "./contract.ts";

runBackendContract("memory", () => {
  const backend = new MemoryBackend();
  return Promise.resolve({ backend, cleanup: () => backend.close() });
});
