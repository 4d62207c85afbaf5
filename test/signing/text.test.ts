// Untrusted text on its way to a terminal or a log: no control character survives as itself.
import { describe, expect, it } from "vitest";
import { capLines, neutralizeBlock, neutralizeLine } from "../../signing/text.js";

// Every code point that can act on a terminal or reorder what is shown.
const CONTROLS = [
  ...Array.from({ length: 0x20 }, (_, i) => i).filter((i) => i !== 0x09),
  ...Array.from({ length: 0x21 }, (_, i) => 0x7f + i),
  0x061c,
  0x200e,
  0x200f,
  0x2028,
  0x2029,
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e,
  0x2066,
  0x2067,
  0x2068,
  0x2069,
].map((cp) => String.fromCodePoint(cp));

describe("neutralizeLine", () => {
  it("shows every control character as a visible escape, newlines included", () => {
    for (const c of CONTROLS) {
      const out = neutralizeLine(`a${c}b`);
      expect(out, `U+${c.codePointAt(0)!.toString(16)}`).toMatch(/^a\\(x[0-9a-f]{2}|u[0-9a-f]{4}|n|r)b$/);
    }
    expect(neutralizeLine("\u001b[2J\u001b]0;title\u0007")).toBe("\\x1b[2J\\x1b]0;title\\x07");
    expect(neutralizeLine("one\ntwo\r")).toBe("one\\ntwo\\r");
    expect(neutralizeLine("abc \u202eevil")).toBe("abc \\u202eevil");
    // C1 CSI (U+009B) acts like ESC [ on some terminals.
    expect(neutralizeLine("\u009b31m")).toBe("\\x9b31m");
  });

  it("leaves ordinary text alone: tabs, accents, CJK, emoji", () => {
    const s = "ok\tété 构建 ✅ 👍";
    expect(neutralizeLine(s)).toBe(s);
  });
});

describe("neutralizeBlock", () => {
  it("keeps newlines and neutralises everything else", () => {
    expect(neutralizeBlock("line 1\nline \u001b[31m2\r\n")).toBe("line 1\nline \\x1b[31m2\\r\n");
  });
});

describe("capLines", () => {
  it("keeps lines in order within the byte budget and says how many were dropped", () => {
    const lines = Array.from({ length: 10 }, (_, i) => `line ${i} ${"x".repeat(10)}`); // 18 bytes + newline each
    const kept = capLines(lines, 60);
    expect(kept.slice(0, -1)).toEqual(lines.slice(0, 3));
    expect(kept.at(-1)).toBe("[7 more log lines dropped: 60 bytes of logs are kept per step]");
    expect(capLines(lines, 10_000)).toEqual(lines);
    expect(capLines([], 10)).toEqual([]);
  });

  it("neutralises what it keeps, and counts the escaped size", () => {
    expect(capLines(["\u001b[2J"], 100)).toEqual(["\\x1b[2J"]);
    expect(capLines(["\u001b".repeat(10)], 20)).toEqual(["[1 more log lines dropped: 20 bytes of logs are kept per step]"]);
  });
});
