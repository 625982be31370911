/**
 * Remote control (Celery's pidbox): the client (`app.control`), the worker's mailbox, the
 * built-in commands and the wire format. See `docs/control.md`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PIDBOX_EXCHANGE } from "./mod.ts";
 * assert.equal(PIDBOX_EXCHANGE, "celery.pidbox");
 * ```
 *
 * @module
 */

export {
  type BroadcastOptions,
  type CallOptions,
  Control,
  Inspect,
  type InspectOptions,
  type NodeReply,
  type TargetOptions,
} from "./client.ts";
export { Mailbox, type MailboxOptions, type QueueDeclaration } from "./mailbox.ts";
export {
  type ArgType,
  BUILTIN_COMMANDS,
  type CommandHandler,
  type CommandKind,
  type CommandOptions,
  type CommandSpec,
  type ControlContext,
  defineCommand,
  NO_REPLY,
  nok,
  ok,
} from "./commands/mod.ts";
export {
  type ControlRequest,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  globMatch,
  isForNode,
  nodeQueue,
  pcreMatch,
  PIDBOX_EXCHANGE,
  pyFloat,
  REPLY_EXCHANGE,
  replyQueue,
} from "./protocol.ts";
export { formatNodeReply, nodesOnline, prettyReply, pyJson } from "./format.ts";
