// One local CA per test process (made with `keys/certs.ts`, as `arcade certs init` does), with a
// server certificate for loopback and client certificates on request.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeCertsDir } from "../../keys/certs.js";

export type TestCerts = {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  agentCert(id: string): Promise<{ cert: string; key: string }>;
};

let certs: Promise<TestCerts> | undefined;

export function testCerts(): Promise<TestCerts> {
  certs ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-certs-"));
    const out = path.join(dir, "pki");
    await writeCertsDir(out, { hosts: ["127.0.0.1", "localhost", "::1"], agents: [] });
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
    return {
      dir: out,
      ca: path.join(out, "ca.pem"),
      cert: path.join(out, "server.pem"),
      key: path.join(out, "server.key"),
      agentCert: async (id: string) => {
        if (!fs.existsSync(path.join(out, "agents", `${id}.pem`)))
          await writeCertsDir(out, { hosts: ["127.0.0.1"], agents: [id], reuseCa: true });
        return { cert: path.join(out, "agents", `${id}.pem`), key: path.join(out, "agents", `${id}.key`) };
      },
    };
  })();
  return certs;
}
