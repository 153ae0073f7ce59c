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

/** `scheme://user:password@host` and `scheme://token@host`: the part before `@`. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@"'<>]+@/gi;
/** A value this short would mask ordinary words; its key is still masked. */
const MIN_REMEMBERED = 4;

const remembered = new Set<string>();
let pattern: RegExp | undefined;

/** Remember the secret values among these KEY=VALUE pairs, to mask them wherever they appear. */
export function rememberSecrets(vars: Iterable<[string, string]>): void {
  let added = false;
  for (const [key, value] of vars) {
    const found: string[] = [];
    // A *_TYPE names a kind ("dockercfg"), not a secret: remembering it would mask the word everywhere.
    if (isSecretKey(key) && !/_TYPE$/i.test(key)) found.push(value);
    // A proxy URL's password (and user) are secrets whatever the key is called.
    for (const m of value.matchAll(/[a-z][a-z0-9+.-]*:\/\/([^\s/@]+)@/gi)) found.push(m[1]!, ...m[1]!.split(':'));
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
  if (added) {
    // Longest first, so a value containing another is masked whole.
    const alternatives = [...remembered].sort((a, b) => b.length - a.length).map(escapeRegExp);
    pattern = new RegExp(alternatives.join('|'), 'g');
  }
}

/** The text with remembered secrets, secret-keyed values and URL credentials masked. */
export function redact(text: string): string {
  let out = text.replace(URL_USERINFO, `$1${MASK}@`);
  if (pattern) {
    out = out.replace(pattern, MASK);
    // The same secrets as JSON would have escaped them (a quote or backslash inside a password).
    for (const v of remembered) {
      const escaped = JSON.stringify(v).slice(1, -1);
      if (escaped !== v) out = out.split(escaped).join(MASK);
    }
  }
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
  pattern = undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
