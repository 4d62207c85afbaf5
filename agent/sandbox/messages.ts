// Agent-side validation of what arrives on fd 3. Plugin code shares its process with the host
// and can write anything to that fd, so every line is checked against these schemas; anything
// else is a protocol violation. Kept out of protocol.ts so the host does not load zod.

import { z } from "zod";

import { SELF_TEST, STAGE_NAMES, type HostMessage } from "./protocol.js";

const handlerName = z.enum([...STAGE_NAMES, SELF_TEST]);

const hostMessageSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("hello"),
    protocol: z.number(),
    nonce: z.string(),
    id: z.string(),
    version: z.string(),
    stages: z.array(z.enum(STAGE_NAMES)),
    selfTest: z.boolean(),
  }),
  z.strictObject({ type: z.literal("log"), message: z.string() }),
  z.discriminatedUnion("ok", [
    z.strictObject({ type: z.literal("result"), stage: handlerName, ok: z.literal(true), result: z.string().nullable() }),
    z.strictObject({ type: z.literal("result"), stage: handlerName, ok: z.literal(false), error: z.string() }),
  ]),
  z.strictObject({ type: z.literal("error"), message: z.string() }),
]);

export class ProtocolViolation extends Error {}

export function parseHostMessage(line: string): HostMessage {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    throw new ProtocolViolation(`non-JSON line on the protocol channel: ${JSON.stringify(line.slice(0, 80))}`);
  }
  const r = hostMessageSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
    throw new ProtocolViolation(`malformed protocol message${where}: ${issue?.message ?? "invalid"}`);
  }
  return r.data;
}
