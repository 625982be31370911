import assert from "node:assert/strict";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { encodeTaskMessage } from "../../src/protocol/task.ts";
import { runBrokerContract } from "./contract.ts";

runBrokerContract({
  name: "memory",
  create() {
    const broker = new MemoryBroker();
    return Promise.resolve({ broker, cleanup: () => broker.close() });
  },
  recover(broker) {
    (broker as MemoryBroker).restoreUnacked();
    return Promise.resolve(broker);
  },
});

Deno.test("memory broker: restoreUnacked gives unsettled deliveries back, redelivered", async () => {
  const broker = new MemoryBroker();
  await broker.publish(encodeTaskMessage({ id: "a", task: "t", origin: "o" }, new Date()), {
    exchange: "",
    routingKey: "q",
  });
  const [d] = await broker.fetch(["q"], { max: 1, timeoutMs: 0 });
  assert.ok(d);
  assert.equal(broker.unackedCount, 1);
  assert.equal(broker.restoreUnacked(), 1);
  const [again] = await broker.fetch(["q"], { max: 1, timeoutMs: 0 });
  assert.equal(again!.redelivered, true);
  await again!.ack();
  assert.equal(broker.unackedCount, 0);
});

Deno.test("memory broker: fanout reaches matching subscribers only", async () => {
  const broker = new MemoryBroker();
  const got: string[] = [];
  const sub = await broker.subscribe(
    "celeryev",
    "worker.*",
    (m) => got.push(m.deliveryInfo!.routingKey),
  );
  const msg = encodeTaskMessage({ id: "e", task: "t", origin: "o" }, new Date());
  await broker.broadcast("celeryev", "worker.heartbeat", msg);
  await broker.broadcast("celeryev", "task.multi", msg);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(got, ["worker.heartbeat"]);
  await sub.close();
});
