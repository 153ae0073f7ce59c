/**
 * The configuration reference cannot drift from the code: docs/configuration.md is what the reference and
 * the schema's defaults render (npm run docs writes it), every key of the schema has its entry (the type
 * says so; this checks the rendered file), and --help lists the same keys.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configDefaults, parseConfig } from '../../src/config.js';
import { configurationDoc, keysHelp } from '../../src/config-reference.js';

const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

describe('the configuration reference', () => {
  it('docs/configuration.md is what the schema and the reference give (run `npm run docs` after changing either)', () => {
    expect(doc).toBe(configurationDoc(configDefaults()));
  });

  it('lists every key the configuration accepts, once, with the default the code uses', () => {
    const keys = [...doc.matchAll(/^\| `ECS_GVISOR_([A-Z0-9_]+)` \| (.*?) \|/gm)].map((m) => [m[1]!, m[2]!] as const);
    const accepted = Object.keys(configDefaults());
    expect(keys.map(([k]) => k).sort()).toEqual([...new Set(keys.map(([k]) => k))].sort());
    // Each documented key is accepted by the parser (an unknown one is refused with exit 2).
    for (const [k] of keys) expect(() => parseConfig({ fileText: `ECS_GVISOR_${k}=\n`, filePath: '/f', env: {} })).not.toThrow();
    expect(keys.length).toBeGreaterThanOrEqual(accepted.length);
    const cfg = parseConfig({ fileText: undefined, filePath: '/f', env: {} });
    expect(Object.fromEntries(keys)).toMatchObject({
      DOCKER_HOST: '`unix:///var/run/docker.sock`',
      ECS_HEARTBEAT_MINUTES: `\`${cfg.ECS_HEARTBEAT_MINUTES}\``,
      RUNSC_ARGS: '(empty)',
      AWS_REGION: "(the ARN's)",
    });
  });

  it('--help lists the same keys, as plain text', () => {
    const help = keysHelp(configDefaults());
    for (const [, k] of doc.matchAll(/^\| `(ECS_GVISOR_[A-Z0-9_]+)`/gm)) expect(help).toContain(`  ${k} (default `);
    expect(help).toContain('ECS_GVISOR_NETWORK_POLICY (default auto)');
    expect(help).not.toContain('`');
  });
});
