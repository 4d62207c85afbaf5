import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import tls from "node:tls";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { agentIdFromCertificate, createCa, issueAgentCert, issueServerCert, writeCertsDir, type Pem } from "../../keys/certs.js";
import { ArcadeError, ErrorCode } from "../../signing/errors.js";

// A single unary method with raw-bytes messages: enough to drive a real TLS handshake through grpc-js.
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const SERVICE: grpc.ServiceDefinition = {
  whoAmI: {
    path: "/arcade.test.Probe/WhoAmI",
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes.serialize,
    requestDeserialize: bytes.deserialize,
    responseSerialize: bytes.serialize,
    responseDeserialize: bytes.deserialize,
  },
};
const ProbeClient = grpc.makeGenericClientConstructor(SERVICE, "Probe");
type Seen = { agentId: string | undefined; transport: string | undefined; hasPeerCert: boolean };

let ca: Pem, otherCa: Pem, server: Pem, agent: Pem, foreignAgent: Pem;
beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createCa({ commonName: "Arcade test CA" }), createCa({ commonName: "Someone else" })]);
  [server, agent, foreignAgent] = await Promise.all([
    issueServerCert(ca, { hosts: ["localhost", "127.0.0.1", "::1"] }),
    issueAgentCert(ca, "agent-7"),
    issueAgentCert(otherCa, "agent-7"),
  ]);
});

const open: (() => void)[] = [];
afterEach(() => {
  while (open.length) open.pop()!();
});

async function startServer(opts: { mtls: boolean; cert?: Pem; host?: string }): Promise<{ port: number; seen: Seen[] }> {
  const s = new grpc.Server();
  const seen: Seen[] = [];
  s.addService(SERVICE, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const auth = call.getAuthContext();
      const peer = auth?.sslPeerCertificate;
      seen.push({ agentId: agentIdFromCertificate(peer), transport: auth?.transportSecurityType, hasPeerCert: peer !== undefined });
      cb(null, Buffer.from("ok"));
    },
  });
  const cert = opts.cert ?? server;
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(ca.certPem),
    [{ cert_chain: Buffer.from(cert.certPem), private_key: Buffer.from(cert.keyPem) }],
    opts.mtls,
  );
  const port = await new Promise<number>((resolve, reject) =>
    s.bindAsync(`${opts.host ?? "127.0.0.1"}:0`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  open.push(() => s.forceShutdown());
  return { port, seen };
}

function call(target: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): Promise<string> {
  const client = new ProbeClient(target, creds, options);
  open.push(() => client.close());
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      SERVICE.whoAmI!.path,
      bytes.serialize,
      bytes.deserialize,
      Buffer.alloc(0),
      { deadline: Date.now() + 10_000 },
      (err: grpc.ServiceError | null, res?: Buffer) => (err ? reject(err) : resolve(res!.toString())),
    ),
  );
}

const sslCreds = (trust: Pem, client?: Pem) =>
  grpc.credentials.createSsl(
    Buffer.from(trust.certPem),
    client ? Buffer.from(client.keyPem) : null,
    client ? Buffer.from(client.certPem) : null,
  );

describe("TLS server certificate", () => {
  it("is accepted by a client trusting the CA, for 127.0.0.1, localhost and ::1", async () => {
    const { port, seen } = await startServer({ mtls: false });
    await expect(call(`127.0.0.1:${port}`, sslCreds(ca))).resolves.toBe("ok");
    // Dial the IP but verify the name, so the test does not depend on how localhost resolves here.
    await expect(call(`127.0.0.1:${port}`, sslCreds(ca), { "grpc.ssl_target_name_override": "localhost" })).resolves.toBe("ok");
    await expect(call(`localhost:${port}`, sslCreds(ca), { "grpc.ssl_target_name_override": "localhost" })).resolves.toBe("ok");
    const v6 = await startServer({ mtls: false, host: "[::1]" });
    await expect(call(`[::1]:${v6.port}`, sslCreds(ca))).resolves.toBe("ok");
    // Without a verified client certificate grpc-js reports no transport security at all.
    expect(seen[0]).toEqual({ agentId: undefined, transport: undefined, hasPeerCert: false });
  });

  it("is refused by a client trusting another CA", async () => {
    const { port } = await startServer({ mtls: false });
    const err = await call(`127.0.0.1:${port}`, sslCreds(otherCa)).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect((err as grpc.ServiceError).details).toMatch(/certificate/i);
  });

  it("is refused for a host name it does not list", async () => {
    const { port } = await startServer({ mtls: false });
    const err = await call(`127.0.0.1:${port}`, sslCreds(ca), { "grpc.ssl_target_name_override": "arcade.example.com" }).catch(
      (e: grpc.ServiceError) => e,
    );
    expect(err).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect((err as grpc.ServiceError).details).toMatch(/altnames|certificate/i);
  });

  it("refuses a plaintext client", async () => {
    const { port, seen } = await startServer({ mtls: false });
    const err = await call(`127.0.0.1:${port}`, grpc.credentials.createInsecure()).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(seen).toEqual([]);
  });
});

describe("mTLS with agent certificates", () => {
  it("accepts an agent certificate from the CA and exposes its agent id to the handler", async () => {
    const { port, seen } = await startServer({ mtls: true });
    await expect(call(`127.0.0.1:${port}`, sslCreds(ca, agent))).resolves.toBe("ok");
    expect(seen).toEqual([{ agentId: "agent-7", transport: "ssl", hasPeerCert: true }]);
  });

  it("refuses a client without a certificate", async () => {
    const { port, seen } = await startServer({ mtls: true });
    await expect(call(`127.0.0.1:${port}`, sslCreds(ca))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(seen).toEqual([]);
  });

  it("refuses a client certificate from another CA", async () => {
    const { port, seen } = await startServer({ mtls: true });
    await expect(call(`127.0.0.1:${port}`, sslCreds(ca, foreignAgent))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(seen).toEqual([]);
  });

  it("refuses a server certificate used as a client certificate (wrong extended key usage)", async () => {
    const { port, seen } = await startServer({ mtls: true });
    await expect(call(`127.0.0.1:${port}`, sslCreds(ca, server))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(seen).toEqual([]);
  });
});

// grpc-js only reports "Failed to connect" for a refused client certificate; node:tls says why.
async function clientCertVerdict(client: Pem): Promise<string | null> {
  const srv = tls.createServer({ key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false });
  open.push(() => srv.close());
  const verdict = new Promise<string | null>((resolve) =>
    srv.on("secureConnection", (sock) => {
      resolve(sock.authorized ? null : String(sock.authorizationError));
      sock.destroy();
    }),
  );
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as { port: number };
  const sock = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca: ca.certPem, key: client.keyPem, cert: client.certPem });
  sock.on("error", () => {});
  open.push(() => sock.destroy());
  return verdict;
}

describe("client certificate verification (node:tls)", () => {
  it("refuses foreign and server certificates for the reasons expected", async () => {
    expect(await clientCertVerdict(agent)).toBeNull();
    expect(await clientCertVerdict(foreignAgent)).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(await clientCertVerdict(server)).toBe("INVALID_PURPOSE");
  });
});

describe("certificate contents", () => {
  it("makes a P-256 CA that signs the server and agent certificates", () => {
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    expect(caCert.subject).toBe("CN=Arcade test CA");
    expect(caCert.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: "prime256v1" });
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    for (const leaf of [server, agent]) {
      const c = new X509Certificate(leaf.certPem);
      expect(c.ca).toBe(false);
      expect(c.checkIssued(caCert)).toBe(true);
      expect(c.verify(caCert.publicKey)).toBe(true);
      expect(c.verify(new X509Certificate(otherCa.certPem).publicKey)).toBe(false);
      expect(leaf.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    }
  });

  it("puts hosts (DNS, IPv4, IPv6) in the server SAN with serverAuth only", async () => {
    const c = new X509Certificate(server.certPem);
    expect(c.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    expect(c.checkIP("::1")).toBe("::1");
    expect(c.toLegacyObject().ext_key_usage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    const mapped = await issueServerCert(ca, { hosts: ["arcade.internal", "fd00::1:2", "::ffff:10.0.0.1"] });
    expect(new X509Certificate(mapped.certPem).subjectAltName).toBe(
      "DNS:arcade.internal, IP Address:FD00:0:0:0:0:0:1:2, IP Address:0:0:0:0:0:FFFF:A00:1",
    );
  });

  it("names the agent in CN and in the arcade://agent/ URI, with clientAuth only", () => {
    const c = new X509Certificate(agent.certPem);
    expect(c.subject).toBe("CN=agent-7");
    expect(c.subjectAltName).toBe("URI:arcade://agent/agent-7");
    expect(c.toLegacyObject().ext_key_usage).toEqual(["1.3.6.1.5.5.7.3.2"]);
  });

  it("backdates notBefore by five minutes, honours validDays and uses 16-byte positive serials", async () => {
    const before = Date.now();
    const short = await issueAgentCert(ca, "a", { validDays: 2 });
    const c = new X509Certificate(short.certPem);
    expect(Date.parse(c.validFrom)).toBeGreaterThanOrEqual(before - 5 * 60_000 - 1000);
    expect(Date.parse(c.validFrom)).toBeLessThanOrEqual(Date.now() - 5 * 60_000);
    expect(Date.parse(c.validTo) - Date.parse(c.validFrom)).toBeCloseTo(2 * 86_400_000 + 5 * 60_000, -4);
    const caDays = (Date.parse(new X509Certificate(ca.certPem).validTo) - Date.now()) / 86_400_000;
    expect(Math.round(caDays)).toBe(3650);
    const serials = new Set([ca, server, agent, short].map((p) => new X509Certificate(p.certPem).serialNumber));
    expect(serials.size).toBe(4);
    // Top bit cleared for a positive INTEGER; a leading zero byte may be dropped by DER.
    for (const s of serials) expect(s).toMatch(/^[0-7]?[0-9A-F]{30,31}$/);
  });

  it("never lets a leaf outlive its CA", async () => {
    const shortCa = await createCa({ commonName: "short", validDays: 1 });
    const leaf = await issueServerCert(shortCa, { hosts: ["localhost"], validDays: 825 });
    expect(new X509Certificate(leaf.certPem).validTo).toBe(new X509Certificate(shortCa.certPem).validTo);
  });

  it("rejects bad input with INVALID_ARGUMENT", async () => {
    const invalid = { name: "ArcadeError", code: ErrorCode.INVALID_ARGUMENT };
    await expect(issueAgentCert(ca, "../etc")).rejects.toMatchObject(invalid);
    await expect(issueAgentCert(ca, "")).rejects.toMatchObject(invalid);
    await expect(issueServerCert(ca, { hosts: [] })).rejects.toMatchObject(invalid);
    await expect(issueServerCert(ca, { hosts: ["bad host"] })).rejects.toMatchObject(invalid);
    await expect(issueServerCert(ca, { hosts: ["fe80::1%eth0"] })).rejects.toMatchObject(invalid);
    await expect(issueServerCert(ca, { hosts: ["localhost"], validDays: 0 })).rejects.toMatchObject(invalid);
    // A leaf is not a CA, and a CA certificate with someone else's key is useless.
    await expect(issueAgentCert(server, "a")).rejects.toMatchObject(invalid);
    await expect(issueAgentCert({ certPem: ca.certPem, keyPem: otherCa.keyPem }, "a")).rejects.toMatchObject(invalid);
    await expect(createCa({ commonName: "" })).rejects.toMatchObject(invalid);
  });
});

describe("agentIdFromCertificate", () => {
  it("prefers the agent URI over the CN", () => {
    expect(agentIdFromCertificate({ subject: { CN: "cn-name" }, subjectaltname: "DNS:x, URI:arcade://agent/uri-name" })).toBe("uri-name");
  });

  it("falls back to the CN when there is no agent URI", () => {
    expect(agentIdFromCertificate({ subject: { CN: "build-01" } })).toBe("build-01");
    expect(agentIdFromCertificate({ subject: { CN: "build-01" }, subjectaltname: "URI:https://example.com/x" })).toBe("build-01");
  });

  it("returns undefined when absent, empty, ambiguous or malformed", () => {
    expect(agentIdFromCertificate(undefined)).toBeUndefined();
    expect(agentIdFromCertificate({})).toBeUndefined();
    expect(agentIdFromCertificate({ subject: { CN: "" } })).toBeUndefined();
    expect(agentIdFromCertificate({ subject: {}, subjectaltname: "" })).toBeUndefined();
    expect(agentIdFromCertificate({ subject: { CN: "../../etc" } })).toBeUndefined();
    expect(agentIdFromCertificate({ subject: { CN: "-leading-dash" } })).toBeUndefined();
    expect(agentIdFromCertificate({ subject: { CN: "x".repeat(65) } })).toBeUndefined();
    expect(agentIdFromCertificate({ subject: { CN: ["a", "b"] } })).toBeUndefined();
    expect(agentIdFromCertificate({ subjectaltname: "URI:arcade://agent/a, URI:arcade://agent/b" })).toBeUndefined();
    expect(agentIdFromCertificate({ subjectaltname: "URI:arcade://agent/" })).toBeUndefined();
  });

  it("does not fall back to the CN when the agent URI is bad", () => {
    expect(agentIdFromCertificate({ subject: { CN: "ok" }, subjectaltname: "URI:arcade://agent/bad/id" })).toBeUndefined();
    // How Node renders a SAN URI that smuggles a separator: it stays one quoted entry.
    const smuggled = 'URI:"arcade://agent/a\\u002c URI:arcade://agent/evil"';
    expect(agentIdFromCertificate({ subject: { CN: "ok" }, subjectaltname: smuggled })).toBeUndefined();
  });
});

describe("writeCertsDir", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-certs-"));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const mode = (f: string) => fs.statSync(f).mode & 0o777;

  it("writes the CA, server and agent files with private modes", async () => {
    const dir = path.join(tmp, "fresh", "certs");
    const { files } = await writeCertsDir(dir, { hosts: ["localhost", "127.0.0.1"], agents: ["a1", "a2", "a1"] });
    const rel = files.map((f) => path.relative(dir, f)).sort();
    expect(rel).toEqual(
      ["ca.key", "ca.pem", "server.key", "server.pem", "agents/a1.key", "agents/a1.pem", "agents/a2.key", "agents/a2.pem"].sort(),
    );
    expect(mode(dir)).toBe(0o700);
    for (const f of files) expect(mode(f)).toBe(f.endsWith(".key") ? 0o600 : 0o644);
    const caCert = new X509Certificate(fs.readFileSync(path.join(dir, "ca.pem")));
    for (const f of ["server.pem", "agents/a1.pem", "agents/a2.pem"])
      expect(new X509Certificate(fs.readFileSync(path.join(dir, f))).verify(caCert.publicKey)).toBe(true);
  });

  it("refuses to overwrite ca.key, naming the file, and leaves the directory untouched", async () => {
    const dir = path.join(tmp, "again");
    await writeCertsDir(dir, { hosts: ["localhost"], agents: ["a1"] });
    const before = fs.readFileSync(path.join(dir, "ca.key"), "utf8");
    const err = await writeCertsDir(dir, { hosts: ["localhost"], agents: ["a2"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArcadeError);
    expect(err).toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringContaining(path.join(dir, "ca.key")) });
    expect(fs.readFileSync(path.join(dir, "ca.key"), "utf8")).toBe(before);
    expect(fs.existsSync(path.join(dir, "agents", "a2.pem"))).toBe(false);
  });

  it("with reuseCa, issues only the missing files, signed by the same CA", async () => {
    const dir = path.join(tmp, "reuse");
    await writeCertsDir(dir, { hosts: ["localhost"], agents: ["a1"] });
    const snapshot = ["ca.pem", "ca.key", "server.pem", "agents/a1.pem"].map((f) => fs.readFileSync(path.join(dir, f), "utf8"));
    const { files } = await writeCertsDir(dir, { hosts: ["localhost"], agents: ["a1", "a2"], reuseCa: true });
    expect(files.map((f) => path.relative(dir, f))).toEqual(["agents/a2.key", "agents/a2.pem"]);
    expect(["ca.pem", "ca.key", "server.pem", "agents/a1.pem"].map((f) => fs.readFileSync(path.join(dir, f), "utf8"))).toEqual(snapshot);
    const caCert = new X509Certificate(fs.readFileSync(path.join(dir, "ca.pem")));
    const a2 = new X509Certificate(fs.readFileSync(path.join(dir, "agents", "a2.pem")));
    expect(a2.checkIssued(caCert)).toBe(true);
    expect(a2.verify(caCert.publicKey)).toBe(true);
    expect(mode(path.join(dir, "agents", "a2.key"))).toBe(0o600);
  });

  it("refuses a half-present pair and a certificate the new CA would not have signed", async () => {
    const dir = path.join(tmp, "half");
    await writeCertsDir(dir, { hosts: ["localhost"], agents: ["a1"] });
    fs.rmSync(path.join(dir, "agents", "a1.key"));
    await expect(writeCertsDir(dir, { hosts: ["localhost"], agents: ["a1"], reuseCa: true })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringContaining("a1.key"),
    });
    const stale = path.join(tmp, "stale");
    fs.mkdirSync(stale);
    fs.writeFileSync(path.join(stale, "server.pem"), "old");
    fs.writeFileSync(path.join(stale, "server.key"), "old");
    await expect(writeCertsDir(stale, { hosts: ["localhost"], agents: [] })).rejects.toMatchObject({
      message: expect.stringContaining("server.pem"),
    });
    expect(fs.existsSync(path.join(stale, "ca.key"))).toBe(false);
  });

  it("rejects an agent id that could escape the agents directory before writing anything", async () => {
    const dir = path.join(tmp, "escape");
    await expect(writeCertsDir(dir, { hosts: ["localhost"], agents: ["../x"] })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
    await expect(writeCertsDir(dir, { hosts: ["bad host"], agents: [] })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(fs.existsSync(dir)).toBe(false);
  });
});
