// Reports step and job results to the server. Reports are retried while the server is
// unreachable, because a result the server never hears about leaves the job looking stuck.
import type { Logger } from "pino";
import type { AgentServiceClient, CompleteJobRequest, ReportStepRequest } from "../proto/gen/arcade/v1/agent.js";
import { StepStatus } from "../proto/gen/arcade/v1/plugin.js";
import { bearer, call, isTransient } from "../proto/rpc.js";
import { ArcadeError, errorMessageOf } from "../signing/errors.js";
import { EVENT } from "../signing/events.js";

export class Reporter {
  constructor(
    private readonly client: AgentServiceClient,
    private readonly token: () => string,
    private readonly log: Logger,
    private readonly attempts = 5,
  ) {}

  async step(r: Partial<ReportStepRequest> & { jobId: string; stepId: string; status: StepStatus }): Promise<void> {
    const req: ReportStepRequest = { result: "", errorMessage: "", errorCode: "", startedAtMs: 0, completedAtMs: 0, logs: [], ...r };
    await this.send("ReportStep", () => call(this.client.reportStep, this.client, req, bearer(this.token())));
  }

  skip(jobId: string, stepId: string): Promise<void> {
    return this.step({ jobId, stepId, status: StepStatus.STEP_STATUS_SKIPPED, completedAtMs: Date.now() });
  }

  async complete(r: CompleteJobRequest): Promise<void> {
    await this.send("CompleteJob", () => call(this.client.completeJob, this.client, r, bearer(this.token())));
  }

  private async send(what: string, fn: () => Promise<unknown>): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        await fn();
        return;
      } catch (e) {
        const transient = e instanceof ArcadeError && isTransient(e);
        if (!transient || i >= this.attempts) {
          this.log.error({ event: EVENT.AGENT_REPORT_FAILED, rpc: what, reason: errorMessageOf(e) }, "could not report to the server");
          return;
        }
        await new Promise((r) => setTimeout(r, 500 * 2 ** i));
      }
    }
  }
}
