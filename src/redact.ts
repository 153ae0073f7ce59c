/**
 * Secrets never leave the process: every string written to the journal, the state dir, stdout or
 * stderr passes through `redact`. Two rules, because neither alone is enough:
 * - by key: a value under a key named like a secret (`*_SECRET*`, `*PASSWORD*`, `*_KEY`, …) is masked
 *   wherever we print KEY=VALUE (ecs.config, the agent's environment);
 * - by value: the values of those keys (and proxy passwords) are remembered when ecs.config is read,
 *   and masked wherever they turn up later, e.g. quoted back inside Docker's error text.
 * Credentials inside URLs (`http://user:pass@proxy`) are masked in any text.
 */

export const MASK = '[redacted]';

/** Keys whose values are secrets (ecs.config, container environments). */
export function isSecretKey(key: string): boolean {
  return /SECRET|PASSWORD|PASSWD|TOKEN|AUTH|CREDENTIAL|PRIVATE|(^|_)KEYS?(_|$)/i.test(key);
}

/** A value this short would mask ordinary words; its key is still masked. */
const MIN_REMEMBERED = 4;

/** A string to mask wherever it occurs, with what a search for it needs. */
interface Needle {
  text: string;
  /** KMP's failure table, for a long needle (the built-in search is O(text × needle) on repetitive ones). */
  fail?: Int32Array;
}

/** Remembered secrets, longest first (a value containing another is masked whole), and their JSON-escaped form. */
let secrets: Needle[] = [];
const remembered = new Set<string>();

/**
 * Where `scheme://userinfo@` puts credentials in `text`: the userinfo's [start, end). Found from each
 * `://` forward to the next `@`, `/`, space or quote, so the scan is linear in the text (a pattern that
 * tried every letter as a scheme's start was quadratic on a long value).
 */
function userinfoSpans(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (let i = text.indexOf('://'); i >= 0; i = text.indexOf('://', i + 3)) {
    if (i === 0 || !/[a-z0-9+.-]/i.test(text[i - 1]!)) continue; // no scheme before it
    let j = i + 3;
    while (j < text.length && !USERINFO_STOP.has(text[j]!)) j++;
    if (text[j] === '@' && j > i + 3) spans.push([i + 3, j]);
  }
  return spans;
}
const USERINFO_STOP = new Set(['@', '/', '"', "'", '<', '>', ' ', '\t', '\n', '\r', '\f', '\v']);

/** A URL query parameter: its name bounded in length, so a long run of letters costs no backtracking. */
const CREDENTIAL_PARAM = /([?&;])([A-Za-z0-9_.-]{1,64})=[^&\s"'#<>]*/g;

/** Query parameters that carry credentials: presigned URLs' and any named like a secret. */
function isCredentialParam(name: string): boolean {
  return (
    /^X-Amz-(Security-Token|Signature|Credential)$/i.test(name) ||
    /token|signature|^sig$|secret|password|passwd|credential|^key$|_key$|apikey/i.test(name)
  );
}

/** Remember the secret values among these KEY=VALUE pairs, to mask them wherever they appear. */
export function rememberSecrets(vars: Iterable<[string, string]>): void {
  let added = false;
  for (const [key, value] of vars) {
    const found: string[] = [];
    // A *_TYPE names a kind ("dockercfg"), not a secret: remembering it would mask the word everywhere.
    if (isSecretKey(key) && !/_TYPE$/i.test(key)) found.push(value);
    // A proxy URL's password (and user) are secrets whatever the key is called.
    for (const [a, b] of userinfoSpans(value)) {
      const info = value.slice(a, b);
      found.push(info, ...info.split(':'));
    }
    for (const v of found) {
      // Whole, unquoted, and each piece between control characters (which error text shows escaped).
      // eslint-disable-next-line no-control-regex
      for (const form of [v, v.replace(/^(["'])(.*)\1$/, '$2'), ...v.split(/[\x00-\x1f\x7f]+/)]) {
        if (form.length >= MIN_REMEMBERED && !remembered.has(form)) {
          remembered.add(form);
          added = true;
        }
      }
    }
  }
  if (added)
    secrets = [...remembered]
      .sort((a, b) => b.length - a.length)
      .flatMap((plain) => {
        const escaped = JSON.stringify(plain).slice(1, -1);
        return (escaped === plain ? [plain] : [plain, escaped]).map(needle);
      });
}

/** Past this length a needle is searched with KMP: linear in the text whatever the needle repeats. */
const LONG = 64;

function needle(text: string): Needle {
  if (text.length <= LONG) return { text };
  const fail = new Int32Array(text.length);
  for (let i = 1, k = 0; i < text.length; i++) {
    while (k > 0 && text.charCodeAt(i) !== text.charCodeAt(k)) k = fail[k - 1]!;
    if (text.charCodeAt(i) === text.charCodeAt(k)) k++;
    fail[i] = k;
  }
  return { text, fail };
}

/** `hay` with every occurrence of `n` (left to right, not overlapping) replaced by `by`. */
function replaceAll(hay: string, n: Needle, by: string): string {
  const { text, fail } = n;
  if (!fail) return hay.includes(text) ? hay.split(text).join(by) : hay;
  let out = '';
  let from = 0;
  for (let i = 0, k = 0; i < hay.length; i++) {
    while (k > 0 && hay.charCodeAt(i) !== text.charCodeAt(k)) k = fail[k - 1]!;
    if (hay.charCodeAt(i) === text.charCodeAt(k)) k++;
    if (k === text.length) {
      out += hay.slice(from, i + 1 - k) + by;
      from = i + 1;
      k = 0;
    }
  }
  return from === 0 ? hay : out + hay.slice(from);
}

/**
 * The text with remembered secrets, secret-keyed values and URL credentials masked. Linear in the text
 * for each remembered secret: no pattern is built from the secrets, and long ones are searched with KMP.
 */
export function redact(text: string): string {
  // A presigned URL's signature and session token (X-Amz-Security-Token, X-Amz-Signature, …).
  let out = text.replace(CREDENTIAL_PARAM, (m, lead: string, name: string) => (isCredentialParam(name) ? `${lead}${name}=${MASK}` : m));
  const spans = userinfoSpans(out);
  if (spans.length) {
    let masked = '';
    let from = 0;
    for (const [a, b] of spans) {
      masked += `${out.slice(from, a)}${MASK}`;
      from = b;
    }
    out = masked + out.slice(from);
  }
  // Each secret as it is and as JSON would have escaped it (a quote or backslash inside a password).
  for (const n of secrets) out = replaceAll(out, n, MASK);
  return out;
}

/** KEY=VALUE with the value masked when the key names a secret, and URL credentials masked in any value. */
export function redactAssignment(kv: string): string {
  const eq = kv.indexOf('=');
  const key = eq < 0 ? kv : kv.slice(0, eq);
  return isSecretKey(key) ? `${key}=${MASK}` : redact(kv);
}

/** For tests: forget what was remembered. */
export function forgetSecrets(): void {
  remembered.clear();
  secrets = [];
}
