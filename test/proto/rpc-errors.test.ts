// proto/rpc.ts turns grpc-js failures into typed errors. The TLS cases are real handshakes
// against a real grpc-js server (mTLS with the test CA): what a user hits with a missing or
// foreign client certificate, a wrong CA or a wrong name must come back as a permanent, typed
// error, and a server that is merely down as a transient one.
import fs from "node:fs";
import path from "node:path";
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentServiceClient, AgentServiceService, type FetchJobRequest, type FetchJobResponse } from "../../proto/gen/arcade/v1/agent.js";
import { CLIENT_OPTIONS, bearer, call, channelCredentials, isTransient, type TlsFiles } from "../../proto/rpc.js";
import { toServiceError } from "../../server/grpc/status.js";
import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import { writeCertsDir } from "../../keys/certs.js";
import { cleanup, tempDir } from "../helpers/harness.js";
import { testCerts, type TestCerts } from "../helpers/tls.js";

let certs: TestCerts;
let foreign: string;
const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) s.forceShutdown();
  await cleanup();
});
beforeAll(async () => {
  certs = await testCerts();
  foreign = tempDir("arcade-foreign-ca-");
  await writeCertsDir(foreign, { hosts: ["127.0.0.1"], agents: ["rpc-a"] });
});

/** A server whose FetchJob answers with `reply` (an error), over TLS, requiring client certs when `mtls`. */
async function serve(mtls: boolean, reply: unknown = new ArcadeError(ErrorCode.UNAUTHENTICATED, "unknown credential")): Promise<string> {
  const s = new Server();
  s.addService(AgentServiceService, {
    fetchJob: (_c: ServerUnaryCall<FetchJobRequest, FetchJobResponse>, cb: sendUnaryData<FetchJobResponse>) => cb(toServiceError(reply)),
  } as never);
  const creds = ServerCredentials.createSsl(
    mtls ? fs.readFileSync(certs.ca) : null,
    [{ cert_chain: fs.readFileSync(certs.cert), private_key: fs.readFileSync(certs.key) }],
    mtls,
  );
  const port = await new Promise<number>((resolve, reject) => s.bindAsync("127.0.0.1:0", creds, (e, p) => (e ? reject(e) : resolve(p))));
  servers.push(s);
  return `127.0.0.1:${port}`;
}

async function fetchError(target: string, tls: TlsFiles, options: Record<string, unknown> = {}): Promise<ArcadeError> {
  const c = new AgentServiceClient(target, channelCredentials(tls), { ...CLIENT_OPTIONS, "grpc.use_local_subchannel_pool": 1, ...options });
  try {
    await call(c.fetchJob, c, {}, bearer("x"), 10_000, { clientCert: Boolean(tls.cert) });
  } catch (e) {
    expect(e).toBeInstanceOf(ArcadeError);
    return e as ArcadeError;
  } finally {
    c.close();
  }
  throw new Error("the call succeeded");
}

function expectClean(e: ArcadeError): void {
  expect(e.message).not.toMatch(/Resolution note/);
  expect(e.message).not.toMatch(/\d{4}-\d\d-\d\dT/); // grpc-js's timestamp
  // neutral: each caller adds its own hint (CLI flags, agent config keys)
  expect(e.message).not.toMatch(/--ca|--cert|tls\.ca|tls\.cert/);
}

describe("fromServiceError on real TLS handshakes", () => {
  it("no client certificate for a server that requires one: TLS_CLIENT_CERT_REQUIRED, permanent", async () => {
    const e = await fetchError(await serve(true), { ca: certs.ca });
    expect(e.code).toBe(ErrorCode.TLS_CLIENT_CERT_REQUIRED);
    expect(isTransient(e)).toBe(false);
    expect(e.message).toMatch(/requires a client certificate/);
    expectClean(e);
  });

  it("a client certificate from another CA: TLS_CLIENT_CERT_REJECTED, permanent once confirmed", async () => {
    const target = await serve(true);
    const tls = { ca: certs.ca, cert: path.join(foreign, "agents", "rpc-a.pem"), key: path.join(foreign, "agents", "rpc-a.key") };
    const e = await fetchError(target, tls);
    expect(e.code).toBe(ErrorCode.TLS_CLIENT_CERT_REJECTED);
    expect(isTransient(e)).toBe(false);
    // TLS 1.3: the server just closes; a server going down at that instant looks the same
    expect(e.details.uncertain).toBe(true);
    expectClean(e);
  });

  it("a server certificate that does not verify against the trusted CA: TLS_SERVER_UNTRUSTED", async () => {
    const e = await fetchError(await serve(false), { ca: path.join(foreign, "ca.pem") });
    expect(e.code).toBe(ErrorCode.TLS_SERVER_UNTRUSTED);
    expect(isTransient(e)).toBe(false);
    expect(e.message).toMatch(/does not verify against the trusted CA/);
    expectClean(e);
  });

  it("a server certificate for another name: TLS_SERVER_UNTRUSTED", async () => {
    const e = await fetchError(await serve(false), { ca: certs.ca }, { "grpc.ssl_target_name_override": "not-this-server.example" });
    expect(e.code).toBe(ErrorCode.TLS_SERVER_UNTRUSTED);
    expectClean(e);
  });

  it("a good handshake passes the server's own typed error through", async () => {
    const e = await fetchError(await serve(true), { ca: certs.ca, ...(await certs.agentCert("rpc-good")) });
    expect([e.code, e.message]).toEqual([ErrorCode.UNAUTHENTICATED, "unknown credential"]);
    expect(isTransient(e)).toBe(false);
  });

  it("a refusal that passes by itself (a throttled source) is transient and says when", async () => {
    const throttled = new ArcadeError(ErrorCode.UNAUTHENTICATED, "too many failed attempts", { retryAfterMs: 1500 });
    const e = await fetchError(await serve(false, throttled), { ca: certs.ca });
    expect(e.code).toBe(ErrorCode.UNAUTHENTICATED);
    expect(isTransient(e)).toBe(true);
    expect(e.details.retryAfterMs).toBe(1500);
  });

  it("a server that is not listening: SERVER_UNAVAILABLE, transient, no empty resolution note", async () => {
    const s = new Server();
    const port = await new Promise<number>((resolve, reject) =>
      s.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    s.forceShutdown(); // the port is now closed: connection refused
    const e = await fetchError(`127.0.0.1:${port}`, { ca: certs.ca, ...(await certs.agentCert("rpc-good")) });
    expect(e.code).toBe(ErrorCode.SERVER_UNAVAILABLE);
    expect(isTransient(e)).toBe(true);
    expect(e.message).toMatch(/ECONNREFUSED/);
    expectClean(e);
  });
});
