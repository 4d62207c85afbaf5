// A local CA for gRPC over TLS/mTLS, so a first deployment gets certificates without any network.
// DER is written by hand and signed with node:crypto because @peculiar/x509 imports tsyringe, which
// throws unless a global `reflect-metadata` polyfill is loaded; three fixed profiles don't need it.
import { createPrivateKey, generateKeyPair, hash, randomBytes, sign, X509Certificate, type KeyObject } from "node:crypto";
import fsp from "node:fs/promises";
import { isIP } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";

export type Pem = { certPem: string; keyPem: string };

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const AGENT_URI = "arcade://agent/";
const ADMIN_URI = "arcade://admin/";
const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;
const CLOCK_SKEW_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

// --- minimal DER ---
function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}
const seq = (...parts: Buffer[]) => tlv(0x30, ...parts);
const TRUE = tlv(0x01, Buffer.from([0xff]));

function int(v: Buffer | number): Buffer {
  let b = typeof v === "number" ? Buffer.from([v]) : v;
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && b[i + 1]! < 0x80) i++;
  b = b.subarray(i);
  // DER integers are signed: a leading 0x00 keeps a high first bit from meaning "negative".
  return tlv(0x02, b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

function oid(dotted: string): Buffer {
  const p = dotted.split(".").map(Number);
  const out = [p[0]! * 40 + p[1]!];
  for (const n of p.slice(2)) {
    const g = [n & 0x7f];
    for (let v = n >>> 7; v; v >>>= 7) g.unshift(0x80 | (v & 0x7f));
    out.push(...g);
  }
  return tlv(0x06, Buffer.from(out));
}

function time(ms: number): Buffer {
  const d = new Date(ms);
  const s = d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(s.slice(2))) : tlv(0x18, Buffer.from(s));
}

type Der = { tag: number; start: number; body: number; end: number };
function read(buf: Buffer, at: number): Der {
  const tag = buf[at]!;
  let n = buf[at + 1]!;
  let body = at + 2;
  if (n & 0x80) {
    const k = n & 0x7f;
    n = 0;
    for (let i = 0; i < k; i++) n = n * 256 + buf[body++]!;
  }
  if (body + n > buf.length) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "malformed DER in certificate");
  return { tag, start: at, body, end: body + n };
}
function children(buf: Buffer, node: Der): Der[] {
  const out: Der[] = [];
  for (let at = node.body; at < node.end; at = out[out.length - 1]!.end) out.push(read(buf, at));
  return out;
}

// --- certificate profiles ---
const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));
const ext = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [TRUE] : []), tlv(0x04, value));
const name = (cn: string) => seq(tlv(0x31, seq(oid("2.5.4.3"), tlv(0x0c, Buffer.from(cn, "utf8")))));
const pem = (der: Buffer) =>
  `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{64}(?!$)/g, "$&\n")}\n-----END CERTIFICATE-----\n`;

type KeyPair = { privateKey: KeyObject; spki: Buffer; keyId: Buffer };
async function newKey(): Promise<KeyPair> {
  const { privateKey, publicKey } = await promisify(generateKeyPair)("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ type: "spki", format: "der" });
  // RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (skipping the unused-bits byte).
  const bits = children(spki, read(spki, 0))[1]!;
  return { privateKey, spki, keyId: hash("sha1", spki.subarray(bits.body + 1, bits.end), "buffer") };
}

type Issuer = { name: Buffer; key: KeyObject; keyId?: Buffer; notAfter: number };
function certify(subject: Buffer, key: KeyPair, issuer: Issuer | "self", days: number, exts: Buffer[]): Pem {
  if (!Number.isFinite(days) || days <= 0) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `validDays must be positive, got ${days}`);
  const iss = issuer === "self" ? { name: subject, key: key.privateKey, keyId: key.keyId, notAfter: Infinity } : issuer;
  const serial = randomBytes(16);
  serial[0]! &= 0x7f; // positive
  const now = Date.now();
  // A leaf outliving its CA would be rejected anyway; clamp so the file says what will really happen.
  const notAfter = Math.min(now + days * DAY_MS, iss.notAfter);
  const aki = iss.keyId ? [ext("2.5.29.35", false, seq(tlv(0x80, iss.keyId)))] : [];
  const extensions = [...exts, ext("2.5.29.14", false, tlv(0x04, key.keyId)), ...aki];
  const validity = seq(time(now - CLOCK_SKEW_MS), time(notAfter));
  const tbs = seq(tlv(0xa0, int(2)), int(serial), ECDSA_SHA256, iss.name, validity, subject, key.spki, tlv(0xa3, seq(...extensions)));
  const signature = sign("sha256", tbs, { key: iss.key, dsaEncoding: "der" });
  return {
    certPem: pem(seq(tbs, ECDSA_SHA256, tlv(0x03, Buffer.from([0]), signature))),
    keyPem: key.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

function loadIssuer(ca: Pem): Issuer {
  let cert: X509Certificate, key: KeyObject;
  try {
    cert = new X509Certificate(ca.certPem);
    key = createPrivateKey(ca.keyPem);
  } catch (e) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `cannot read CA certificate or key: ${errorMessageOf(e)}`);
  }
  if (!cert.ca) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `certificate ${cert.subject} is not a CA`);
  if (!cert.checkPrivateKey(key)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "CA key does not match the CA certificate");
  const raw = cert.raw;
  const f = children(raw, children(raw, read(raw, 0))[0]!);
  const subject = f[(f[0]?.tag === 0xa0 ? 1 : 0) + 4]!; // after [version], serial, signature, issuer, validity
  // The AKI must repeat the CA's own SKI byte for byte (OpenSSL matches on it), so read it rather than recompute.
  let keyId: Buffer | undefined;
  const extList = f.find((x) => x.tag === 0xa3);
  for (const e of extList ? children(raw, children(raw, extList)[0]!) : []) {
    const [id, ...rest] = children(raw, e);
    const value = rest[rest.length - 1]!;
    if (raw.subarray(id!.start, id!.end).equals(oid("2.5.29.14"))) keyId = raw.subarray(read(raw, value.body).body, value.end);
  }
  return { name: raw.subarray(subject.start, subject.end), key, keyId, notAfter: Date.parse(cert.validTo) || Infinity };
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  // Expand "::" and a trailing dotted quad into eight 16-bit groups.
  const quad = (a: string, b: string) => ((+a << 8) | +b).toString(16);
  const v6 = ip.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) => `${quad(a, b)}:${quad(c, d)}`);
  const [head, tail] = v6.split("::").map((s) => (s ? s.split(":") : []));
  const groups = tail ? [...head!, ...Array<string>(8 - head!.length - tail.length).fill("0"), ...tail] : head!;
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

// CA:false, keyUsage digitalSignature (all ECDHE needs), one extended key usage, the SAN.
const leaf = (eku: string, san: Buffer[]) => [
  ext("2.5.29.19", true, seq()),
  ext("2.5.29.15", true, tlv(0x03, Buffer.from([7, 0x80]))),
  ext("2.5.29.37", false, seq(oid(eku))),
  ext("2.5.29.17", false, seq(...san)),
];

export async function createCa(o: { commonName: string; validDays?: number }): Promise<Pem> {
  if (!o.commonName || o.commonName.length > 64) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "CA name must be 1-64 characters");
  return certify(name(o.commonName), await newKey(), "self", o.validDays ?? 3650, [
    ext("2.5.29.19", true, seq(TRUE, int(0))),
    ext("2.5.29.15", true, tlv(0x03, Buffer.from([1, 0x06]))), // keyCertSign | cRLSign
  ]);
}

export async function issueServerCert(ca: Pem, o: { hosts: string[]; validDays?: number }): Promise<Pem> {
  if (o.hosts.length === 0) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "a server certificate needs at least one host");
  const san = o.hosts.map((h) => {
    if (isIP(h) && !h.includes("%")) return tlv(0x87, ipBytes(h)); // a zone id means nothing to the peer
    if (h.length <= 253 && DNS_NAME.test(h)) return tlv(0x82, Buffer.from(h, "ascii"));
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `not a DNS name or IP address: ${JSON.stringify(h)}`);
  });
  const cn = o.hosts[0]!.length <= 64 ? o.hosts[0]! : "arcade server";
  return certify(name(cn), await newKey(), loadIssuer(ca), o.validDays ?? 825, leaf("1.3.6.1.5.5.7.3.1", san));
}

export async function issueAgentCert(ca: Pem, agentId: string, o: { validDays?: number } = {}): Promise<Pem> {
  if (!AGENT_ID.test(agentId)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `invalid agent id ${JSON.stringify(agentId)}`);
  const san = [tlv(0x86, Buffer.from(AGENT_URI + agentId, "ascii"))];
  return certify(name(agentId), await newKey(), loadIssuer(ca), o.validDays ?? 825, leaf("1.3.6.1.5.5.7.3.2", san));
}

/**
 * A client certificate for people and automation (the `arcade` admin commands) on a server that
 * requires client certificates. It names no agent: its CN ("admin:<name>") is not a valid agent
 * id and its URI is not an agent URI, so it can never stand in for an agent's certificate.
 * Authorisation still comes from the admin token and its role.
 */
export async function issueAdminCert(ca: Pem, adminName: string, o: { validDays?: number } = {}): Promise<Pem> {
  if (!AGENT_ID.test(adminName))
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      `invalid admin name ${JSON.stringify(adminName)}: 1-64 letters, digits, '.', '_' or '-'`,
    );
  const san = [tlv(0x86, Buffer.from(ADMIN_URI + adminName, "ascii"))];
  return certify(name(`admin:${adminName}`), await newKey(), loadIssuer(ca), o.validDays ?? 825, leaf("1.3.6.1.5.5.7.3.2", san));
}

type PeerCert = { subject?: { CN?: string | string[] }; subjectaltname?: string };
export function agentIdFromCertificate(cert: PeerCert | undefined): string | undefined {
  // Node JSON-quotes SAN values holding separators (URI:"a\u002c URI:b"), so splitting on ", " is
  // safe; a quoted agent URI keeps its quote, fails AGENT_ID, and still blocks the CN fallback.
  const uris = (cert?.subjectaltname ?? "").split(", ").flatMap((s) => /^URI:"?arcade:\/\/agent\/(.*)$/.exec(s)?.[1] ?? []);
  // Once a certificate claims an agent URI, a bad or conflicting one must not fall back to the CN.
  const candidates = uris.length > 0 ? uris : [cert?.subject?.CN ?? []].flat();
  const id = candidates[0];
  return id !== undefined && candidates.every((c) => c === id) && AGENT_ID.test(id) ? id : undefined;
}

export type CertsDirOptions = { hosts: string[]; agents: string[]; admins?: string[]; reuseCa?: boolean };
export async function writeCertsDir(dir: string, o: CertsDirOptions): Promise<{ files: string[] }> {
  const exists = async (f: string) => (await fsp.stat(path.join(dir, f)).catch(() => null)) !== null;
  const refuse = (f: string, why: string) => new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${path.join(dir, f)} ${why}`, { file: f });
  const bad = o.agents.find((a) => !AGENT_ID.test(a));
  if (bad !== undefined) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `invalid agent id ${JSON.stringify(bad)}`);
  const admins = o.admins ?? [];
  const badAdmin = admins.find((a) => !AGENT_ID.test(a));
  if (badAdmin !== undefined) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `invalid admin name ${JSON.stringify(badAdmin)}`);
  const reuse = await exists("ca.key");
  if (reuse && !o.reuseCa) throw refuse("ca.key", "already exists; refusing to overwrite a CA key (reuse it to issue only missing files)");
  if (reuse !== (await exists("ca.pem"))) throw refuse(reuse ? "ca.pem" : "ca.key", "is missing but its pair exists");
  // Check every pair before writing anything so a refusal never leaves a half-written directory.
  const missing: string[] = [];
  for (const p of ["server", ...new Set(o.agents.map((a) => `agents/${a}`)), ...new Set(admins.map((a) => `admins/${a}`))]) {
    const [c, k] = [await exists(`${p}.pem`), await exists(`${p}.key`)];
    if (c !== k) throw refuse(`${p}.${c ? "key" : "pem"}`, "is missing but its pair exists");
    if (c && !reuse) throw refuse(`${p}.pem`, "already exists but would not be signed by the new CA");
    if (!c) missing.push(p);
  }
  // Issue everything in memory first: a bad host name must fail before any file is written.
  const load = (f: string) => fsp.readFile(path.join(dir, f), "utf8");
  const ca = reuse ? { certPem: await load("ca.pem"), keyPem: await load("ca.key") } : await createCa({ commonName: "Arcade local CA" });
  const issued: [string, Pem][] = reuse ? [] : [["ca", ca]];
  const issue = (p: string) =>
    p === "server"
      ? issueServerCert(ca, { hosts: o.hosts })
      : p.startsWith("admins/")
        ? issueAdminCert(ca, p.slice("admins/".length))
        : issueAgentCert(ca, p.slice("agents/".length));
  for (const p of missing) issued.push([p, await issue(p)]);

  if ((await fsp.mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined) await fsp.chmod(dir, 0o700);
  await fsp.mkdir(path.join(dir, "agents"), { recursive: true, mode: 0o700 });
  if (admins.length > 0) await fsp.mkdir(path.join(dir, "admins"), { recursive: true, mode: 0o700 });
  const files: string[] = [];
  const put = async (f: string, data: string, mode: number) => {
    // "wx" so a concurrent run cannot clobber a key; chmod because the umask may have narrowed the mode.
    await fsp.writeFile(path.join(dir, f), data, { flag: "wx", mode });
    await fsp.chmod(path.join(dir, f), mode);
    files.push(path.join(dir, f));
  };
  for (const [p, pair] of issued) {
    await put(`${p}.key`, pair.keyPem, 0o600);
    await put(`${p}.pem`, pair.certPem, 0o644);
  }
  return { files };
}
