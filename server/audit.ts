// Append-only audit events: who did what to what, the outcome, why, and from where. Every
// refusal and every change of who may do what is recorded here. (The audit issue chains the
// records with hashes, signs checkpoints and adds fail-closed mode.)
import type { Logger } from "pino";
import type { Db } from "./db/client.js";
import { EVENT } from "../signing/events.js";
import type { AuditAction, AuditOutcome } from "../signing/vocabulary.js";

export type AuditEvent = {
  actor: string;
  action: AuditAction;
  subject?: string;
  outcome: AuditOutcome;
  reason?: string;
  source?: string;
  details?: Record<string, unknown>;
};

export class AuditLog {
  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  /** Appends an event. A failure to record is logged loudly but does not change the decision already taken. */
  async record(e: AuditEvent): Promise<void> {
    try {
      await this.db.auditEvent.create({
        data: {
          actor: e.actor.slice(0, 200),
          action: e.action,
          subject: (e.subject ?? "").slice(0, 500),
          outcome: e.outcome,
          reason: (e.reason ?? "").slice(0, 2000),
          source: (e.source ?? "").slice(0, 200),
          details: JSON.stringify(e.details ?? {}),
        },
      });
    } catch (err) {
      this.log.error({ event: EVENT.SERVER_AUDIT_NOT_RECORDED, err, action: e.action, outcome: e.outcome }, "AUDIT EVENT NOT RECORDED");
    }
  }
}
