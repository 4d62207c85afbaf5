// `arcade agent doctor`: what the plugin sandbox can do on this machine, in a few readable lines,
// with what to do about each layer that is off.

import { describeLayers, detectSandbox, formatSandboxReport, SLOT_UID_BASE, type SandboxReport } from "./sandbox/detect.js";
import { DEFAULT_RLIMITS, SLOT_NPROC } from "./sandbox/layers.js";

const FIXES: Record<string, string> = {
  "permission-model": "use Node 20.19+ (22.13+ or 24 for the stable --permission)",
  rlimits: "install util-linux (prlimit)",
  "uid-drop": "run the agent as root (it drops to a dedicated uid per slot)",
  namespaces: "install bubblewrap (apt-get install bubblewrap); in Docker allow user namespaces (e.g. --security-opt seccomp=unconfined)",
};

export async function runDoctor(): Promise<string> {
  return formatDoctor(await detectSandbox());
}

const mib = (n: number) => `${Math.round(n / 1024 / 1024)} MiB`;

export function formatDoctor(r: SandboxReport): string {
  const lines = [
    `Plugin sandbox on node ${r.node.version} (${r.uid === 0 ? "running as root" : `uid ${r.uid}`}), checked in ${r.detectMs} ms`,
  ];
  for (const layer of describeLayers(r)) {
    if (layer.name === "process+env") {
      lines.push("  on   process+env: own process group, allowlisted environment, fresh 0700 work dir, heap cap, fd-3 protocol limits");
    } else if (layer.on) {
      lines.push(`  on   ${layer.text}${detail(r, layer.name)}`);
    } else {
      const fix =
        layer.name === "uid-drop" && r.uid === 0 ? "make node and the agent's install dirs searchable (o+x) by others" : FIXES[layer.name];
      lines.push(`  OFF  ${layer.text}; to enable: ${fix ?? "see docs"}`);
    }
  }
  const { bwrap, unshare } = r.namespaceTools;
  if (r.layers.namespaces) {
    const other = r.layers.namespaces.tool === "bwrap" ? ["unshare", unshare, r.off.unshare] : ["bubblewrap", bwrap, r.off.bwrap];
    lines.push(`       fallback ${other[0]}: ${other[1] ? "works" : `off (${String(other[2])})`}`);
    lines.push("  network: denied unless the plugin's manifest asks for it and the agent's policy allows it");
  } else {
    lines.push("  network: NOT isolated: plugins can reach the network and local services (requireNetworkIsolation refuses to run them)");
  }
  for (const note of r.notes) lines.push(`  note: ${note}`);
  lines.push(`  ${formatSandboxReport(r)}`);
  return lines.join("\n");
}

function detail(r: SandboxReport, name: string): string {
  switch (name) {
    case "permission-model":
      return ": reads only the host, plugin dir, work dir and workspace; writes the last two; no child processes, workers, addons, WASI or inspector";
    case "rlimits":
      return (
        `: cpu ${DEFAULT_RLIMITS.cpuSeconds} s, data ${mib(DEFAULT_RLIMITS.dataBytes)}, file size ${mib(DEFAULT_RLIMITS.fileBytes)},` +
        ` ${DEFAULT_RLIMITS.openFiles} open files, no core dumps${r.layers.uidDrop ? `, ${SLOT_NPROC} threads per slot` : ""}`
      );
    case "uid-drop":
      return `: slot n runs as uid/gid ${SLOT_UID_BASE}+n (no /etc/passwd entry needed)`;
    case "namespaces": {
      const ns = r.layers.namespaces!;
      return `${ns.version ? ` ${ns.version}` : ""} at ${ns.path}${ns.tool === "bwrap" ? ": read-only /usr, only the plugin's own dirs, tmpfs /tmp" : ": same filesystem view, own /proc"}`;
    }
    default:
      return "";
  }
}
