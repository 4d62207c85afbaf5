// Conversions between the wire enums and the names stored in the database and shown to users.
// Hand-written (not generated): it sits beside proto/gen so server and agent share one mapping.
import { Stage, StepStatus } from "./gen/arcade/v1/plugin.js";

export type StageName = "before" | "after" | "on_success" | "on_failure";

const STAGE_TO_NAME: Partial<Record<Stage, StageName>> = {
  [Stage.STAGE_BEFORE]: "before",
  [Stage.STAGE_ON_SUCCESS]: "on_success",
  [Stage.STAGE_ON_FAILURE]: "on_failure",
  [Stage.STAGE_AFTER]: "after",
};

export function stageName(s: Stage): StageName | undefined {
  return STAGE_TO_NAME[s];
}

export function stageFromName(n: string): Stage | undefined {
  const hit = Object.entries(STAGE_TO_NAME).find(([, v]) => v === n);
  return hit ? (Number(hit[0]) as Stage) : undefined;
}

/** The seed's t_job_plugin.status numbers; the wire enum reserves 0 for "unset". */
export const DbStepStatus = { pending: 0, running: 1, succeeded: 2, failed: 3, skipped: 4 } as const;
export type DbStepStatus = (typeof DbStepStatus)[keyof typeof DbStepStatus];

export function stepStatusToDb(s: StepStatus): DbStepStatus | undefined {
  return s >= StepStatus.STEP_STATUS_PENDING && s <= StepStatus.STEP_STATUS_SKIPPED ? ((s - 1) as DbStepStatus) : undefined;
}

export function stepStatusFromDb(n: number): StepStatus {
  return n >= 0 && n <= 4 ? ((n + 1) as StepStatus) : StepStatus.UNRECOGNIZED;
}

export function stepStatusName(n: number): string {
  return Object.entries(DbStepStatus).find(([, v]) => v === n)?.[0] ?? `unknown(${n})`;
}
