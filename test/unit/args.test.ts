import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import { VERSION } from '../../src/version.js';

describe('parseArgs', () => {
  it('parses the contract commands', () => {
    expect(parseArgs(['bootstrap'])).toEqual({
      kind: 'command',
      command: 'bootstrap',
      steps: ['ecs-init', 'runtime', 'network', 'agent'],
      json: false,
    });
    expect(parseArgs(['plan', '--only', 'agent,runtime'])).toMatchObject({ steps: ['runtime', 'agent'] });
    expect(parseArgs(['rollback', '--only=runtime'])).toMatchObject({ command: 'rollback', steps: ['runtime'] });
    expect(parseArgs(['status', '--json'])).toMatchObject({ command: 'status', json: true });
    expect(parseArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseArgs(['run', '--version'])).toEqual({ kind: 'version' });
  });

  it.each([
    [[], /No command given/],
    [['deploy'], /Unknown command "deploy"/],
    [['bootstrap', '--only', 'runtime,dns'], /unknown step "dns"/],
    [['bootstrap', '--only'], /--only needs a list of steps/],
    [['status', '--only', 'runtime'], /Unknown option "--only" for status/],
    [['bootstrap', '--json'], /Unknown option "--json" for bootstrap/],
    [['status', 'extra'], /Unknown option "extra" for status/],
    [['status', '--json=yes'], /--json takes no value/],
    [['plan', '--only', 'runtime', '--only=agent'], /--only given twice/],
    [['plan', '--only='], /--only needs a list of steps/],
    [['run', '-x'], /Unknown option "-x" for run/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(message);
  });
});

describe('version', () => {
  it('matches package.json', () => {
    expect(VERSION).toBe(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  });
});
