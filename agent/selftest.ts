// The self-test gate: a verified, extracted plugin is started once in the sandbox before it is
// marked usable. It must complete the handshake (protocol version, echoed nonce, the id, version
// and stages of its manifest) and pass its optional selfTest within the timeout; otherwise it is
// quarantined and never becomes usable.
import fsp from "node:fs/promises";
import path from "node:path";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";
import { pluginKey, type PluginManifest } from "../signing/manifest.js";
import { PluginProcess } from "./sandbox/runner.js";

export type SelfTest = (pluginDir: string, manifest: PluginManifest) => Promise<void>;

export function sandboxSelfTest(o: {
  tempDir: string;
  timeoutMs: number;
  sandbox?: { allowNetwork: boolean; requireNetworkIsolation: boolean };
}): SelfTest {
  return async (pluginDir, manifest) => {
    const key = pluginKey(manifest.id, manifest.version);
    const root = await fsp.mkdtemp(path.join(o.tempDir, ".selftest-"));
    const workspace = path.join(root, "workspace");
    await fsp.mkdir(workspace, { mode: 0o700 });
    let proc: PluginProcess | undefined;
    try {
      proc = await PluginProcess.start({
        pluginDir,
        manifest,
        workRoot: root,
        jobWorkspace: workspace,
        limits: { handshakeTimeoutMs: o.timeoutMs, stageTimeoutMs: o.timeoutMs },
        ...(o.sandbox ? { sandbox: o.sandbox } : {}),
      });
      const r = await proc.selfTest({}, { id: "self-test" });
      if (!r.ok)
        throw new ArcadeError(
          ErrorCode.SELF_TEST_FAILED,
          `${key} failed its self-test: ${r.error?.code ?? ""} ${r.error?.message ?? ""}`.trim(),
        );
    } catch (e) {
      // The host's fault, not the plugin's: report it as such and never quarantine a good plugin for it.
      if (e instanceof ArcadeError && (e.code === ErrorCode.SELF_TEST_FAILED || e.code === ErrorCode.SANDBOX_UNAVAILABLE)) throw e;
      throw new ArcadeError(ErrorCode.SELF_TEST_FAILED, `${key} failed its self-test: ${errorMessageOf(e)}`, {
        cause: e instanceof ArcadeError ? e.code : undefined,
      });
    } finally {
      await proc?.close().catch(() => undefined);
      await fsp.rm(root, { recursive: true, force: true });
    }
  };
}
