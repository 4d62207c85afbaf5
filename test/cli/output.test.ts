// The CLI's printing helpers: --json with enum names, terminal-safe text, flag hints, and the
// decision to draw progress bars.
import { describe, expect, it, vi } from "vitest";
import { JOB_ENUMS } from "../../cli/jobs.js";
import { hintFor, printable, reportError, toJson } from "../../cli/output.js";
import { wantsProgress } from "../../cli/progress.js";
import { Stage, StepStatus } from "../../proto/gen/arcade/v1/plugin.js";
import { ArcadeError, ErrorCode } from "../../signing/errors.js";

describe("toJson", () => {
  it("names enum fields, keeps defaults, parses detailsJson, dates as ISO", () => {
    const step = { stage: Stage.STAGE_AFTER, status: StepStatus.STEP_STATUS_SUCCEEDED, exitCode: 0, result: "" };
    expect(toJson({ jobId: "j", status: "failed", steps: [step] }, JOB_ENUMS)).toEqual({
      jobId: "j",
      status: "failed",
      steps: [{ stage: "after", status: "succeeded", exitCode: 0, result: "" }],
    });
    expect(toJson({ detailsJson: '{"a":1}', at: new Date(0) })).toEqual({ details: { a: 1 }, at: "1970-01-01T00:00:00.000Z" });
    expect(toJson({ stage: 99 }, JOB_ENUMS)).toEqual({ stage: "unknown(99)" });
  });
});

describe("printable", () => {
  it("shows control characters as escapes so no terminal sequence runs; keeps newlines and tabs", () => {
    expect(printable("a\u001b[2Jb\u0007\tc\nd\u009b\u202e")).toBe("a\\x1b[2Jb\\x07\tc\nd\\x9b\\u202e");
  });
});

describe("reportError", () => {
  it("prints error CODE: message, then the flag hint for TLS codes", () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((l: string) => void lines.push(l));
    try {
      reportError(new ArcadeError("TLS_CLIENT_CERT_REQUIRED" as ErrorCode, "the server asked for a client certificate"));
      reportError(new ArcadeError(ErrorCode.INVALID_ARGUMENT, "x\u001b]0;pwned\u0007"));
    } finally {
      spy.mockRestore();
    }
    expect(lines).toEqual([
      "error TLS_CLIENT_CERT_REQUIRED: the server asked for a client certificate",
      `hint: ${hintFor("TLS_CLIENT_CERT_REQUIRED")}`,
      "error INVALID_ARGUMENT: x\\x1b]0;pwned\\x07",
    ]);
    for (const code of ["TLS_CLIENT_CERT_REQUIRED", "TLS_CLIENT_CERT_REJECTED", "TLS_SERVER_UNTRUSTED"])
      expect(hintFor(code)).toMatch(/pass --/);
  });
});

describe("wantsProgress", () => {
  it("draws only on a TTY that is not dumb, unless ARCADE_NO_PROGRESS is set", () => {
    expect(wantsProgress({ isTTY: true }, {})).toBe(true);
    expect(wantsProgress({ isTTY: false }, {})).toBe(false);
    expect(wantsProgress({}, {})).toBe(false);
    expect(wantsProgress({ isTTY: true }, { TERM: "dumb" })).toBe(false);
    expect(wantsProgress({ isTTY: true }, { ARCADE_NO_PROGRESS: "1" })).toBe(false);
  });
});
