/** Line diffs for `plan` output. */

/** A compact line diff (unified style, no context limit) for `plan` output. */
export function renderDiff(file: string, before: string | undefined, after: string | undefined): string {
  const a = before === undefined ? [] : splitLines(before);
  const b = after === undefined ? [] : splitLines(after);
  const out = [
    `--- ${before === undefined ? '/dev/null' : `${file} (current)`}`,
    `+++ ${after === undefined ? '/dev/null' : `${file} (planned)`}`,
  ];
  // LCS table; daemon.json files are small (capped at 1 MiB, typically < 100 lines).
  const n = a.length;
  const m = b.length;
  if (n * m > 4_000_000) {
    return [...out, ...a.map((l) => `-${l}`), ...b.map((l) => `+${l}`)].join('\n');
  }
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push(` ${a[i]}`);
      i++;
      j++;
    } else if (i < n && (j === m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) {
      out.push(`-${a[i]}`);
      i++;
    } else {
      out.push(`+${b[j]}`);
      j++;
    }
  }
  return out.join('\n');
}

function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
