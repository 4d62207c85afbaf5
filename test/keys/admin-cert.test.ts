// Admin client certificates from `arcade certs init`: what the admin commands present to a server
// that requires client certificates. They must never be usable as an agent's certificate.
import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { agentIdFromCertificate, createCa, issueAdminCert, writeCertsDir } from "../../keys/certs.js";
import { ErrorCode } from "../../signing/errors.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-admin-cert-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** What node:tls shows a server of a peer certificate, for agentIdFromCertificate. */
function peerView(pem: string) {
  const x = new X509Certificate(pem);
  return { subject: { CN: /CN=(.*)/.exec(x.subject)?.[1] }, subjectaltname: x.subjectAltName };
}

describe("admin client certificates", () => {
  it("are client certificates from the CA that name no agent", async () => {
    const ca = await createCa({ commonName: "test CA" });
    const admin = await issueAdminCert(ca, "alice");
    const x = new X509Certificate(admin.certPem);
    expect(x.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(x.subject).toContain("CN=admin:alice");
    expect(x.subjectAltName).toBe("URI:arcade://admin/alice");
    // clientAuth only (node lists the extended key usages as keyUsage), like agent certificates
    expect(x.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    // The server reads no agent id from it, so it can never pass for an agent under mTLS.
    expect(agentIdFromCertificate(peerView(admin.certPem))).toBeUndefined();
  });

  it("refuses a name that could leave the admins directory", async () => {
    const ca = await createCa({ commonName: "test CA" });
    await expect(issueAdminCert(ca, "../x")).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    const dir = path.join(tmp, "bad");
    await expect(writeCertsDir(dir, { hosts: ["localhost"], agents: [], admins: ["a/b"] })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("are written by writeCertsDir beside the agents', private, and added later with reuseCa", async () => {
    const dir = path.join(tmp, "pki");
    const first = await writeCertsDir(dir, { hosts: ["localhost"], agents: ["build-7"], admins: ["admin"] });
    expect(first.files.map((f) => path.relative(dir, f))).toEqual(
      expect.arrayContaining(["admins/admin.key", "admins/admin.pem", "agents/build-7.pem"]),
    );
    expect(fs.statSync(path.join(dir, "admins", "admin.key")).mode & 0o777).toBe(0o600);
    const second = await writeCertsDir(dir, { hosts: ["localhost"], agents: [], admins: ["admin", "ci"], reuseCa: true });
    expect(second.files.map((f) => path.relative(dir, f)).sort()).toEqual(["admins/ci.key", "admins/ci.pem"]);
  });
});
