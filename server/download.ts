// DownloadPlugin's streaming half: a header, then the blob in chunks from the requested
// offset. The whole blob is re-hashed on every download (bytes before the offset are read and
// hashed but not sent), so a stored blob that no longer matches its recorded sha256 ends the
// stream with BLOB_CORRUPT instead of a normal end.
import { once } from "node:events";
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { DownloadPluginRequest, DownloadPluginResponse } from "../proto/gen/arcade/v1/agent.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { HashCounter } from "../signing/digest.js";
import type { BlobStore } from "./blobstore.js";
import { storedRelease } from "./plugins.js";

export type StoredPlugin = {
  pluginId: string;
  version: string;
  sha256: string;
  size: number;
  storageKey: string;
  statement: string;
  openpgpSignatures: string;
  sigstoreBundles: string;
};

export async function streamBlob(
  call: ServerWritableStream<DownloadPluginRequest, DownloadPluginResponse>,
  store: BlobStore,
  p: StoredPlugin,
  offset: number,
  chunkSize: number,
): Promise<{ sent: number; cancelled: boolean }> {
  // A wrong size is caught before a single byte goes out.
  const onDisk = await store.size(p.storageKey);
  if (onDisk !== p.size) {
    throw new ArcadeError(
      ErrorCode.BLOB_CORRUPT,
      `stored blob for ${p.pluginId}@${p.version} is ${onDisk ?? "missing"} bytes, recorded ${p.size}: the server refuses to serve it; an operator must restore the blob file or publish a new version`,
    );
  }
  if (offset > p.size) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `offset ${offset} is past the end (${p.size} bytes)`);

  // The release travels with the bytes; the agent checks it against its own keyring, not ours.
  const release = storedRelease(p);
  const plugin = { pluginId: p.pluginId, version: p.version, sha256: p.sha256, size: p.size };
  call.write({ payload: { $case: "header", value: { plugin, offset, release } } });

  const hash = new HashCounter();
  const rs = store.openRead(p.storageKey, chunkSize);
  let sent = 0;
  // grpc-js never fires 'drain' after a cancel (see the grpc note), so a cancel must end the wait.
  const cancelled = new Promise<void>((resolve) => call.once("cancelled", () => resolve()));
  let isCancelled = false;
  void cancelled.then(() => {
    isCancelled = true;
    rs.destroy();
  });
  try {
    for await (const buf of rs as AsyncIterable<Buffer>) {
      const start = hash.size;
      hash.update(buf);
      if (hash.size <= offset) continue;
      const chunk = start >= offset ? buf : buf.subarray(offset - start);
      sent += chunk.length;
      if (!call.write({ payload: { $case: "chunk", value: chunk } })) {
        await Promise.race([once(call, "drain"), cancelled]);
      }
      if (isCancelled) break;
    }
  } catch (e) {
    if (isCancelled) return { sent, cancelled: true };
    throw e;
  }
  if (isCancelled) return { sent, cancelled: true };
  if (hash.digest() !== p.sha256) {
    throw new ArcadeError(
      ErrorCode.BLOB_CORRUPT,
      `stored blob for ${p.pluginId}@${p.version} no longer matches its recorded sha256 ${p.sha256}: refusing it; an operator must restore the blob file or publish a new version`,
    );
  }
  return { sent, cancelled: false };
}
