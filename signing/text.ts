// Untrusted text (plugin logs and results, command output, error messages from the other side)
// reaches terminals and log files. Control characters there can move the cursor, rewrite what
// was already printed, change the window title or forge whole lines, and bidirectional
// overrides can make a line read differently from what it holds (SECURITY.md, "untrusted
// text"). Everything such text passes through on its way to a person goes through here.

// C0 controls, DEL, C1 controls, and the Unicode bidi embedding/override/isolate controls
// plus the line and paragraph separators that some terminals and viewers treat as newlines.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;
// The same, but newline is allowed (multi-line output such as a job's command output).
// eslint-disable-next-line no-control-regex
const UNSAFE_KEEP_NEWLINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

function escape(c: string): string {
  const cp = c.codePointAt(0)!;
  if (c === "\n") return "\\n";
  if (c === "\r") return "\\r";
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, "0")}` : `\\u${cp.toString(16).padStart(4, "0")}`;
}

/**
 * One line of untrusted text made safe to print: every control character (newlines included,
 * so it cannot forge a following line) is shown as a visible escape such as `\x1b`. Tab stays.
 */
export function neutralizeLine(s: string): string {
  return s.replace(UNSAFE, escape);
}

/** Like neutralizeLine, but keeps newlines: for multi-line output printed as a block. */
export function neutralizeBlock(s: string): string {
  return s.replace(UNSAFE_KEEP_NEWLINES, escape);
}

/**
 * Lines of untrusted text kept under a byte budget: each neutralised, in order, and once the
 * budget is spent a last line says how many were dropped. Used for a step's ctx.log() lines by
 * the agent (before reporting) and again by the server (which does not trust the agent).
 */
export function capLines(lines: readonly string[], maxBytes: number): string[] {
  const kept: string[] = [];
  let used = 0;
  for (const [i, raw] of lines.entries()) {
    const line = neutralizeLine(raw);
    const size = Buffer.byteLength(line) + 1;
    if (used + size > maxBytes) {
      kept.push(`[${lines.length - i} more log lines dropped: ${maxBytes} bytes of logs are kept per step]`);
      break;
    }
    kept.push(line);
    used += size;
  }
  return kept;
}
