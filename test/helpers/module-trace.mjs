// `node --import ./test/helpers/module-trace.mjs ...` appends every module the program resolves
// through the ESM loader (one URL a line) to $MODULE_TRACE_FILE: used to check which libraries a
// command loads (test/e2e/cli-startup.test.ts). CommonJS require() calls made inside CommonJS
// packages are not seen; the package entry imported from our ESM code is.
import { register } from "node:module";

const file = process.env.MODULE_TRACE_FILE;
if (file) {
  const hooks = `
    import fs from "node:fs";
    export async function resolve(specifier, context, next) {
      const r = await next(specifier, context);
      fs.appendFileSync(${JSON.stringify(file)}, r.url + "\\n");
      return r;
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}
