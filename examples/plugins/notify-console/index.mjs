// Stages `on_success` and `on_failure`: one process serves both; the job's outcome arrives in ctx.job.status.
const announce = (ctx) => `[${ctx.config.channel ?? "#builds"}] job ${ctx.job.id.slice(0, 8)} ${ctx.job.status}`;

export const on_success = async (ctx) => announce(ctx);
export const on_failure = async (ctx) => announce(ctx);
