import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMAND_HELP, COMMANDS, parseArgs, quickAnswer } from '../../src/cli/args.js';
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

describe('help and usage', () => {
  it('no arguments: the usage; help about one command, or all; check-config and plan take --json', () => {
    expect(parseArgs([])).toEqual({ kind: 'usage' });
    expect(parseArgs(['plan', '--help'])).toEqual({ kind: 'help', command: 'plan' });
    expect(parseArgs(['help', 'check-config'])).toEqual({ kind: 'help', command: 'check-config' });
    expect(parseArgs(['help'])).toEqual({ kind: 'help' });
    expect(parseArgs(['check-config', '--json'])).toMatchObject({ kind: 'command', command: 'check-config', json: true });
    expect(parseArgs(['plan', '--json', '--only', 'network'])).toMatchObject({ command: 'plan', json: true, steps: ['network'] });
    expect(() => parseArgs(['check-config', '--only', 'runtime'])).toThrow(/Unknown option "--only" for check-config/);
  });

  it('answers a command’s help and the version before loading the program; the global help needs the keys, so it waits', () => {
    expect(quickAnswer(['status', '--help'])).toBe(COMMAND_HELP.status);
    expect(quickAnswer(['--version'])).toMatch(/^ecs-gvisor \d/);
    expect(quickAnswer(['--help'])).toBeUndefined();
    expect(quickAnswer([])).toBeUndefined();
    for (const c of COMMANDS) expect(COMMAND_HELP[c]).toMatch(new RegExp(`^Usage: ecs-gvisor ${c}`));
  });
});

describe('version', () => {
  it('matches package.json', () => {
    expect(VERSION).toBe(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  });
});
