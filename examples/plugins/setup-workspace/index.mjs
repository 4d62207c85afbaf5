// Stage `before`: runs ahead of the job's commands, in its own process, with the job workspace
// as the only place it writes to.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

export async function before(ctx) {
  const info = { job: ctx.job.id, greeting: ctx.config.greeting ?? "hello", preparedBy: `${ctx.plugin.id}@${ctx.plugin.version}` };
  await writeFile(join(ctx.job.workspace, "build-info.json"), JSON.stringify(info, null, 2) + "\n");
  ctx.log(`wrote build-info.json for job ${ctx.job.id}`);
  return { wrote: "build-info.json" };
}
