// postinstall: build (generated code + dist/) after `npm install` in a clone. `npm link` and
// `npm install -g .` run this script too, and a full build there took minutes and rewrote
// dist/ under whatever was running from it; they only need the bin (dist/cli/main.js) to exist.
// So for those a finished build is kept, and `npm run build` stays the way to rebuild.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const linking = process.env.npm_command === "link" || process.env.npm_config_global === "true";
const built = fs.existsSync(path.join(root, "dist", "cli", "main.js"));

if (linking && built) {
  console.log("arcade: dist/ is already built; not rebuilding for a link or global install (run `npm run build` after changing sources)");
} else {
  // npm_execpath is the npm running this script; fall back to `npm` on PATH.
  const npm = process.env.npm_execpath;
  const r = npm
    ? spawnSync(process.execPath, [npm, "run", "build"], { cwd: root, stdio: "inherit" })
    : spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit", shell: process.platform === "win32" });
  process.exit(r.status ?? 1);
}
