/** Pure command-line parsing for the operator contract (README: Usage, Configuration, Exit codes). */
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

export function parseArgs(argv: readonly string[]): Parsed {
  const usage = (msg: string) => new EcsGvisorError('USAGE', `${msg} (see ecs-gvisor --help).`);
  if (argv.length === 0) throw usage('No command given');
  if (argv.includes('-h') || argv.includes('--help') || argv[0] === 'help') return { kind: 'help' };
  if (argv.includes('-V') || argv.includes('--version')) return { kind: 'version' };

  const [command, ...rest] = argv;
  if (!(COMMANDS as readonly string[]).includes(command!)) throw usage(`Unknown command "${command}"`);
  let steps: Step[] | undefined;
  let json = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--json' && command === 'status') {
      json = true;
    } else if ((arg === '--only' || arg.startsWith('--only=')) && ['bootstrap', 'plan', 'rollback'].includes(command!)) {
      const value = arg === '--only' ? rest[++i] : arg.slice('--only='.length);
      if (!value) throw usage('--only needs a list of steps');
      const names = value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const bad = names.find((n) => !(STEPS as readonly string[]).includes(n));
      if (bad !== undefined || names.length === 0) {
        throw usage(`--only names an unknown step "${bad ?? value}"; steps are ${STEPS.join(', ')}`);
      }
      if (steps !== undefined) throw usage('--only given twice');
      steps = STEPS.filter((s) => names.includes(s)); // contract order, whatever order was typed
    } else {
      throw usage(`Unknown option "${arg}" for ${command}`);
    }
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
