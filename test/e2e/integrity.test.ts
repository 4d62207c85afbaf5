// What the server refuses to store and to serve, and what the agent refuses to install.
import fs from "node:fs";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminServiceClient, PublishPluginResponse } from "../../proto/gen/arcade/v1/admin.js";
import { Stage, StepStatus } from "../../proto/gen/arcade/v1/plugin.js";
import { bearer, call, fromServiceError } from "../../proto/rpc.js";
import { waitForJob } from "../../cli/jobs.js";
import { sha256File } from "../../signing/digest.js";
import { readReleaseFiles } from "../../signing/release.js";
import { EXAMPLES, cleanup, pack, startTestAgent, startTestServer, writePlugin, type TestServer } from "../helpers/harness.js";

let server: TestServer;
afterAll(cleanup);
beforeAll(async () => {
  server = await startTestServer(`[plugin]\nmax_plugin_size = 1\n`);
});

/** Publishes raw bytes with a hand-made header, to try what the CLI would never send. */
async function rawPublish(
  client: AdminServiceClient,
  md: Metadata,
  header: { pluginId: string; version: string; sha256: string; size: number },
  body: Buffer,
  releaseOf?: string,
): Promise<PublishPluginResponse> {
  const r = releaseOf ? await readReleaseFiles(releaseOf) : undefined;
  const release = r && {
    statement: Buffer.from(r.statement),
    openpgpSignatures: r.openpgp.map((b) => Buffer.from(b)),
    sigstoreBundles: r.sigstore,
  };
  return new Promise((resolve, reject) => {
    const c = client.publishPlugin(md, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
    c.write({ payload: { $case: "header", value: { ...header, release } } });
    for (let i = 0; i < body.length; i += 65536) c.write({ payload: { $case: "chunk", value: body.subarray(i, i + 65536) } });
    c.end();
  });
}

function blobPath(sha256: string): string {
  return path.join(server.dir, "data", "plugins", "sha256", sha256.slice(0, 2), sha256);
}

describe("publish", () => {
  it("stores a version once and refuses the same id@version with other bytes", async () => {
    const a = await pack(
      writePlugin({ id: "test/immutable", version: "1.0.0", stages: ["before"], source: "export const before = async () => 'a';\n" }),
    );
    const b = await pack(
      writePlugin({ id: "test/immutable", version: "1.0.0", stages: ["before"], source: "export const before = async () => 'b';\n" }),
    );
    expect((await server.publish(a.file)).created).toBe(true);
    expect((await server.publish(a.file)).created).toBe(false); // same bytes again: harmless
    await expect(server.publish(b.file)).rejects.toMatchObject({ code: "VERSION_IMMUTABLE" });
    const res = await call(server.admin.client.listPlugins, server.admin.client, { pluginId: "test/immutable" }, server.admin.md);
    expect(res.plugins.map((p) => p.plugin?.sha256)).toEqual([a.sha256]);
  });

  it("refuses a declared checksum the bytes do not match, and stores nothing", async () => {
    const p = await pack(path.join(EXAMPLES, "notify-console"));
    const body = fs.readFileSync(p.file);
    const wrong = "0".repeat(64);
    await expect(
      rawPublish(
        server.admin.client,
        server.admin.md,
        { pluginId: p.id, version: p.version, sha256: wrong, size: body.length },
        body,
        p.file,
      ),
    ).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
    await expect(
      rawPublish(server.admin.client, server.admin.md, { pluginId: p.id, version: p.version, sha256: "", size: body.length }, body, p.file),
    ).rejects.toMatchObject({ code: "CHECKSUM_MISSING" });
    expect(fs.existsSync(blobPath(p.sha256))).toBe(false);
    expect(fs.readdirSync(path.join(server.dir, "data", "plugins", "tmp"))).toEqual([]);
  });

  it("refuses a tarball whose manifest names another plugin (mix-and-match)", async () => {
    const p = await pack(path.join(EXAMPLES, "notify-console"));
    const body = fs.readFileSync(p.file);
    await expect(
      rawPublish(
        server.admin.client,
        server.admin.md,
        { pluginId: "notify/other", version: p.version, sha256: p.sha256, size: body.length },
        body,
        p.file,
      ),
    ).rejects.toMatchObject({ code: "MANIFEST_MISMATCH" });
  });

  it("enforces max_plugin_size, declared or not", async () => {
    const p = await pack(
      writePlugin({
        id: "test/huge",
        version: "1.0.0",
        stages: ["before"],
        source: "export const before = async () => 1;\n",
        files: { "x.bin": (await import("node:crypto")).randomBytes(1_200_000) },
      }),
    );
    await expect(server.publish(p.file)).rejects.toMatchObject({ code: "SIZE_LIMIT" });
    const body = fs.readFileSync(p.file);
    // Undeclared size: the server counts while it receives and stops at the cap.
    await expect(
      rawPublish(server.admin.client, server.admin.md, { pluginId: p.id, version: p.version, sha256: p.sha256, size: 0 }, body, p.file),
    ).rejects.toMatchObject({ code: "SIZE_LIMIT" });
    // A header that lies about the size contradicts the signed statement before a byte is read.
    await expect(
      rawPublish(server.admin.client, server.admin.md, { pluginId: p.id, version: p.version, sha256: p.sha256, size: 10 }, body, p.file),
    ).rejects.toMatchObject({ code: "SIZE_MISMATCH" });
    expect(fs.readdirSync(path.join(server.dir, "data", "plugins", "tmp"))).toEqual([]);
  });

  it("refuses callers without the admin token", async () => {
    const p = await pack(path.join(EXAMPLES, "notify-console"));
    await expect(
      rawPublish(
        server.admin.client,
        bearer("wrong-token-wrong-token"),
        { pluginId: p.id, version: p.version, sha256: p.sha256, size: p.size },
        fs.readFileSync(p.file),
      ),
    ).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(call(server.admin.client.listPlugins, server.admin.client, { pluginId: "" }, new Metadata())).rejects.toMatchObject({
      code: "UNAUTHENTICATED",
    });
  });
});

describe("a stored blob that no longer matches its checksum", () => {
  for (const damage of ["flipped byte", "truncated"] as const) {
    it(`is refused (${damage}) and the agent installs nothing`, async () => {
      const id = damage === "truncated" ? "test/truncated" : "test/flipped";
      const p = await pack(
        writePlugin({
          id,
          version: "1.0.0",
          stages: ["before"],
          source: "export const before = async () => 'ran';\n",
          files: { "data.txt": (await import("node:crypto")).randomBytes(50_000).toString("hex") },
        }),
      );
      await server.publish(p.file);
      const blob = blobPath(p.sha256);
      const bytes = fs.readFileSync(blob);
      if (damage === "truncated") fs.writeFileSync(blob, bytes.subarray(0, bytes.length - 10));
      else {
        bytes[bytes.length >> 1]! ^= 0xff;
        fs.writeFileSync(blob, bytes);
      }
      const agent = await startTestAgent(server);
      const { client, md } = server.admin;
      const { jobId } = await call(
        client.submitJob,
        client,
        {
          commands: ["echo should-not-run"],
          plugins: [{ pluginId: id, version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }],
          agentId: agent.id,
          timeoutSeconds: 60,
        },
        md,
      );
      const job = await waitForJob(client, md, jobId, 60_000);
      expect(job.status).toBe("failed");
      expect(job.errorCode).toBe("BLOB_CORRUPT");
      expect(job.output).not.toContain("should-not-run");
      expect(job.steps[0]!.status).toBe(StepStatus.STEP_STATUS_FAILED);
      expect(await server.metricValue("plugin_download_total", { plugin_id: id, status: "corrupt" })).toBeGreaterThanOrEqual(1);
      // Nothing usable, nothing half-written: no installed dir, no index entry, no partial file.
      expect(fs.existsSync(path.join(agent.pluginsDir, "downloaded", id.split("/")[0]!, `${id.split("/")[1]}@1.0.0`))).toBe(false);
      const index = JSON.parse(fs.readFileSync(path.join(agent.pluginsDir, "index.json"), "utf8")) as { entries: Record<string, unknown> };
      expect(Object.keys(index.entries)).not.toContain(`${id}@1.0.0`);
      expect(fs.readdirSync(path.join(agent.pluginsDir, "temp", "downloads"))).toEqual([]);
      expect(fs.readdirSync(path.join(agent.pluginsDir, "temp")).filter((f) => f !== "downloads")).toEqual([]);
      expect(await agent.metricValue("plugin_download_total", { plugin_id: id, status: "BLOB_CORRUPT" })).toBe(1);
      // and the server still holds the damaged blob for the operator to inspect
      expect((await sha256File(blob)).sha256).not.toBe(p.sha256);
    });
  }
});
