/**
 * ecs.config as ecs-init reads it: trim the file, split lines, trim each, split on the first `=`, no
 * unquoting; lines without `=` are ignored. Values stay byte-identical to what ecs-init would pass. Two
 * differences, both reported: `#` comment lines are skipped (ecs-init would pass `# KEY` as a variable),
 * and values wrapped in quotes are kept but warned about (the agent receives the quotes).
 */

import { EcsGvisorError, messageOf } from '../errors.js';
import type { FilesPort } from '../ports.js';
import { redactAssignment, rememberSecrets } from '../redact.js';

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
        if (line.includes('='))
          warnings.push(`${file} line ${i + 1}: a comment; ecs-init would have passed it to the agent as a variable, ecs-gvisor skips it`);
        return;
      }
      const eq = line.indexOf('=');
      if (eq < 0) return;
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1);
      // Docker refuses these (the first at create, the second only at start, after the running agent
      // would have been stopped for its replacement): refused here, before anything is touched.
      if (key === '')
        throw new EcsGvisorError(
          'ECS_CONFIG_INVALID',
          `${file} line ${i + 1}: no variable name before "=", which Docker cannot pass to the agent; nothing was changed.`,
        );
      if (line.includes('\0'))
        throw new EcsGvisorError(
          'ECS_CONFIG_INVALID',
          `${file} line ${i + 1}: ${JSON.stringify(key.replaceAll('\0', '')).slice(0, 80)} has a NUL byte, which Docker cannot pass to the agent; nothing was changed.`,
        );
      if (/^(["']).*\1$/.test(value) && value.length >= 2) {
        warnings.push(`${file} line ${i + 1}: the value of ${key} is in quotes; the agent receives the quotes too (as with ecs-init)`);
      }
      vars.set(key, value);
    });
  return { vars, warnings };
}

/** An environment as it may be shown: secret-keyed values and URL credentials masked. */
export function redactEnv(env: readonly string[]): string[] {
  return env.map(redactAssignment);
}

export interface EcsConfigs {
  instance: EcsConfigFile;
  user: EcsConfigFile;
  /** As ecs-init layers them: /var/lib/ecs/ecs.config, then /etc/ecs/ecs.config wins. */
  merged: Map<string, string>;
  warnings: string[];
}

/** Read and parse both files ecs-init reads; a missing file is empty, an unreadable one an error. */
export async function loadEcsConfigs(files: Pick<FilesPort, 'readText'>, instancePath: string, userPath: string): Promise<EcsConfigs> {
  const read = (p: string) =>
    files.readText(p).catch((err: unknown) => {
      throw new EcsGvisorError('ECS_CONFIG_INVALID', `${p} cannot be read (${messageOf(err)}).`, { cause: err });
    });
  const [instanceText, userText] = await Promise.all([read(instancePath), read(userPath)]);
  const instance = parseEcsConfig(instancePath, instanceText);
  const user = parseEcsConfig(userPath, userText);
  // From here on, these values are masked in everything we write (Docker may quote them back at us).
  rememberSecrets([...instance.vars, ...user.vars]);
  return { instance, user, merged: new Map([...instance.vars, ...user.vars]), warnings: [...instance.warnings, ...user.warnings] };
}
