// Stage `after` (CommonJS, to show both module kinds work): always runs, last.
const { readdir, stat } = require("node:fs/promises");
const { join } = require("node:path");

exports.after = async (ctx) => {
  const files = [];
  for (const name of (await readdir(ctx.job.workspace)).sort()) {
    const st = await stat(join(ctx.job.workspace, name));
    if (st.isFile()) files.push(`${name} (${st.size} B)`);
  }
  return { outcome: ctx.job.status, files };
};
