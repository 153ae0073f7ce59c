/** Pure command-line parsing for the operator contract (README: Usage, Configuration, Exit codes). */
import { parseArgs as nodeParseArgs } from 'node:util';
import { EcsGvisorError } from '../errors.js';
import { VERSION } from '../version.js';

export const STEPS = ['ecs-init', 'runtime', 'network', 'agent'] as const;
export type Step = (typeof STEPS)[number];
export const COMMANDS = ['bootstrap', 'run', 'plan', 'status', 'rollback'] as const;
export type Command = (typeof COMMANDS)[number];

export type Parsed = { kind: 'help' } | { kind: 'version' } | { kind: 'command'; command: Command; steps: Step[]; json: boolean };

export const HELP = `Usage: ecs-gvisor <command> [options]

Makes gVisor's runsc Docker's default runtime on an Amazon ECS container instance, proves it,
and runs the ECS agent under runc in place of ecs-init.

Commands:
  bootstrap [--only STEP[,STEP...]]  converge once and exit (0 = converged and verified)
  run                                bootstrap, then supervise and watch until SIGTERM
  plan [--only STEP[,STEP...]]       print what bootstrap would change; change nothing
  status [--json]                    runtime, agent, registration and lifecycle state
  rollback [--only STEP[,STEP...]]   undo what bootstrap did

Steps, in order: ${STEPS.join(', ')}

Options:
  --only STEP[,STEP...]  limit bootstrap, plan or rollback to these steps
  --json                 machine-readable status
  -h, --help             show this help
  -V, --version          show the version

Configuration: KEY=VALUE lines in /etc/ecs/ecs-gvisor.config (or $ECS_GVISOR_CONFIG),
overridden by environment variables of the same names. See the README for keys and exit codes.
`;

/** Every option any command takes; which command takes which is checked below. */
const OPTIONS = {
  only: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/** Which commands take each option (help and version: all). */
const TAKES: Record<string, readonly Command[]> = { only: ['bootstrap', 'plan', 'rollback'], json: ['status'] };

export function parseArgs(argv: readonly string[]): Parsed {
  const usage = (msg: string) => new EcsGvisorError('USAGE', `${msg} (see ecs-gvisor --help).`);
  if (argv.length === 0) throw usage('No command given');
  // Not strict: an option no command takes is named in our own sentence, after --help and --version.
  const { tokens } = nodeParseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  const options = tokens.filter((t) => t.kind === 'option');
  if (options.some((t) => t.name === 'help') || argv[0] === 'help') return { kind: 'help' };
  if (options.some((t) => t.name === 'version')) return { kind: 'version' };

  const command = argv[0]!;
  if (!(COMMANDS as readonly string[]).includes(command)) throw usage(`Unknown command "${command}"`);
  let steps: Step[] | undefined;
  let json = false;
  for (const t of tokens.slice(1)) {
    if (t.kind === 'option-terminator') continue;
    if (t.kind === 'positional') throw usage(`Unknown option "${t.value}" for ${command}`);
    if (!TAKES[t.name]?.includes(command as Command)) throw usage(`Unknown option "${t.rawName}" for ${command}`);
    if (t.name === 'json') {
      if (t.value !== undefined) throw usage('--json takes no value');
      json = true;
      continue;
    }
    if (!t.value) throw usage('--only needs a list of steps');
    const names = t.value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const bad = names.find((n) => !(STEPS as readonly string[]).includes(n));
    if (bad !== undefined || names.length === 0) {
      throw usage(`--only names an unknown step "${bad ?? t.value}"; steps are ${STEPS.join(', ')}`);
    }
    if (steps !== undefined) throw usage('--only given twice');
    steps = STEPS.filter((s) => names.includes(s)); // contract order, whatever order was typed
  }
  return { kind: 'command', command: command as Command, steps: steps ?? [...STEPS], json };
}

/**
 * What --help and --version print, undefined for any other command line (a refused one included: main
 * says why). Needs nothing beyond this module, so the entry answers them before loading the rest.
 */
export function quickAnswer(argv: readonly string[]): string | undefined {
  try {
    return answerOf(parseArgs(argv));
  } catch {
    return undefined;
  }
}

/** The text --help or --version prints; undefined for a command. */
export function answerOf(parsed: Parsed): string | undefined {
  if (parsed.kind === 'help') return HELP;
  // The Node.js inside: the release executable carries its own, the bundle runs on the host's.
  if (parsed.kind === 'version') return `ecs-gvisor ${VERSION} (node ${process.version})\n`;
  return undefined;
}
