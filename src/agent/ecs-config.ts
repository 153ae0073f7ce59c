/**
 * ecs.config as ecs-init reads it: trim the file, split lines, trim each, split on the first `=`, no
 * unquoting; lines without `=` are ignored. Values stay byte-identical to what ecs-init would pass. Two
 * differences, both reported: `#` comment lines are skipped (ecs-init would pass `# KEY` as a variable),
 * and values wrapped in quotes are kept but warned about (the agent receives the quotes).
 */

export interface EcsConfigFile {
  vars: Map<string, string>;
  warnings: string[];
}

export function parseEcsConfig(file: string, text: string | undefined): EcsConfigFile {
  const vars = new Map<string, string>();
  const warnings: string[] = [];
  if (text === undefined) return { vars, warnings };
  text
    .trim()
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line.startsWith('#')) {
        if (line.includes('=')) warnings.push(`${file} line ${i + 1}: a comment; ecs-init would have passed it to the agent as a variable, ecs-gvisor skips it`);
        return;
      }
      const eq = line.indexOf('=');
      if (eq < 0) return;
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1);
      if (/^(["']).*\1$/.test(value) && value.length >= 2) {
        warnings.push(`${file} line ${i + 1}: the value of ${key} is in quotes; the agent receives the quotes too (as with ecs-init)`);
      }
      vars.set(key, value);
    });
  return { vars, warnings };
}

/** Keys whose values never reach logs or `plan` output. */
export function isSecretKey(key: string): boolean {
  return key === 'ECS_ENGINE_AUTH_DATA' || /SECRET|PASSWORD|TOKEN|AUTH/i.test(key);
}

export function redactEnv(env: readonly string[]): string[] {
  return env.map((kv) => {
    const eq = kv.indexOf('=');
    const key = eq < 0 ? kv : kv.slice(0, eq);
    return isSecretKey(key) ? `${key}=[redacted]` : kv;
  });
}
