// The CLI's side of AdminService: where the server is, the admin token, and the publish upload.
// On every client command's path: what only publishing needs (tar, zod, signatures) is
// imported inside publishFile.
import fs from "node:fs";
import path from "node:path";
import type { Metadata } from "@grpc/grpc-js";
import { AdminServiceClient, type PublishPluginResponse } from "../proto/gen/arcade/v1/admin.js";
import { CLIENT_OPTIONS, bearer, channelCredentials, fromServiceError } from "../proto/rpc.js";
import { isLoopback, splitHostPort } from "../signing/address.js";
import { ArcadeError, ErrorCode, isArcadeError } from "../signing/errors.js";
import { transferProgress } from "./progress.js";

export { call } from "../proto/rpc.js";

export type ConnectOptions = {
  server?: string;
  token?: string;
  dataDir?: string;
  insecure?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
};

export function resolveToken(o: ConnectOptions): string {
  const direct = o.token ?? process.env.ARCADE_ADMIN_TOKEN;
  if (direct) return direct.trim();
  const file = path.join(path.resolve(o.dataDir ?? process.env.ARCADE_DATA_DIR ?? "./arcade-data"), "admin.token");
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch {
    throw new ArcadeError(
      ErrorCode.UNAUTHENTICATED,
      `no admin token: pass --token, set ARCADE_ADMIN_TOKEN, or point --data-dir at the server's data directory (looked for ${file})`,
    );
  }
}

export function connectAdmin(o: ConnectOptions): { client: AdminServiceClient; md: Metadata } {
  const server = o.server ?? process.env.ARCADE_SERVER ?? "127.0.0.1:50051";
  // The admin token travels in every call: never in plaintext off this host unless told to.
  if (!o.ca && !isLoopback(splitHostPort(server).host) && !o.insecure) {
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      `refusing to send the admin token in plaintext to ${server}: use a loopback address, or pass --insecure if the network is protected otherwise`,
    );
  }
  const creds = channelCredentials({ ca: o.ca, cert: o.cert, key: o.key });
  return { client: new AdminServiceClient(server, creds, CLIENT_OPTIONS), md: bearer(resolveToken(o)) };
}

const CHUNK = 256 * 1024;

/** Uploads a tarball: header (id, version from its manifest; sha256 and size computed here), then chunks. */
export async function publishFile(client: AdminServiceClient, md: Metadata, file: string): Promise<PublishPluginResponse> {
  const { readManifestFromTarball } = await import("../signing/pack.js");
  const { sha256File } = await import("../signing/digest.js");
  const { readReleaseFiles } = await import("../signing/release-files.js");
  const manifest = await readManifestFromTarball(file);
  const { sha256, size } = await sha256File(file);
  // The signed statement and signatures beside the tarball; without them the server decides
  // (it refuses unless it runs in development mode with unsigned plugins allowed).
  const r = await readReleaseFiles(file).catch((e: unknown) => {
    if (isArcadeError(e, ErrorCode.SIGNATURE_MISSING)) return undefined;
    throw e;
  });
  const release = r && {
    statement: Buffer.from(r.statement),
    openpgpSignatures: r.openpgp.map((b) => Buffer.from(b)),
    sigstoreBundles: r.sigstore,
  };
  const progress = await transferProgress(`${manifest.id}@${manifest.version}`, size);
  return new Promise<PublishPluginResponse>((resolve, reject) => {
    const call = client.publishPlugin(md, { deadline: new Date(Date.now() + 30 * 60_000) }, (err, res) =>
      err ? reject(fromServiceError(err)) : resolve(res),
    );
    void (async () => {
      call.write({ payload: { $case: "header", value: { pluginId: manifest.id, version: manifest.version, sha256, size, release } } });
      let sent = 0;
      for await (const buf of fs.createReadStream(file, { highWaterMark: CHUNK }) as AsyncIterable<Buffer>) {
        if (!call.write({ payload: { $case: "chunk", value: buf } })) await new Promise((r) => call.once("drain", r));
        sent += buf.length;
        progress.update(sent);
      }
      call.end();
    })().catch((e: unknown) => {
      call.cancel();
      reject(e instanceof ArcadeError ? e : new ArcadeError(ErrorCode.INTERNAL, String(e)));
    });
  }).finally(() => progress.stop());
}
