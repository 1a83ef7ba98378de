/**
 * Text from a file (tensor names, metadata keys and values, shard names) made safe to print on a
 * terminal: a header is untrusted, and a name holding a newline, a carriage return or an escape sequence
 * (ANSI CSI, OSC: colours, cursor moves, a window title, a hyperlink) could forge lines of the output or
 * drive the terminal.
 */

/** C0 controls, DEL, C1 controls, and the bidirectional overrides and isolates (which reorder a line). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `s` with a backslash doubled and every control character escaped (`\n`, `\r`, `\t`, `\x1b`, `\u202e`),
 * so that one value prints as one line of plain characters and an escape reads back unambiguously.
 * The `hash` command's sha256sum lines keep their own, format-defined escaping (`sumLine`).
 */
export function printable(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(UNSAFE, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
}

/**
 * JSON text (from `JSON.stringify`, which escapes C0 controls but leaves DEL, C1 controls and the
 * bidirectional controls as they are) with those written as `\uXXXX` escapes too: the same JSON value,
 * safe on a terminal.
 */
export function printableJson(json: string): string {
  return json.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
