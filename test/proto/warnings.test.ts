// Only grpc-js's IP-servername deprecation (DEP0123) is dropped; every other warning still shows.
import { describe, expect, it } from "vitest";
import { silenceIpServernameWarning } from "../../proto/warnings.js";

describe("silenceIpServernameWarning", () => {
  it("drops DEP0123 and passes every other warning on", async () => {
    silenceIpServernameWarning(); // already on through test/helpers/setup.ts; a second call must be harmless
    const seen: string[] = [];
    const on = (w: Error & { code?: string }) => seen.push(w.code ?? w.name);
    process.on("warning", on);
    try {
      process.emitWarning("Setting the TLS ServerName to an IP address", "DeprecationWarning", "DEP0123");
      process.emitWarning("Setting the TLS ServerName to an IP address", { type: "DeprecationWarning", code: "DEP0123" });
      process.emitWarning("something else", "DeprecationWarning", "DEP0999");
      process.emitWarning("plain");
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off("warning", on);
    }
    expect(seen).toEqual(["DEP0999", "Warning"]);
  });
});
