/** Pure command-line parsing for the operator contract (docs/operations.md, docs/configuration.md). */
import { parseArgs as nodeParseArgs } from 'node:util';
import { EcsGvisorError } from '../errors.js';
import { VERSION } from '../version.js';

export const STEPS = ['ecs-init', 'runtime', 'network', 'agent'] as const;
export type Step = (typeof STEPS)[number];
export const COMMANDS = ['bootstrap', 'run', 'plan', 'status', 'rollback', 'check-config'] as const;
export type Command = (typeof COMMANDS)[number];

export type Parsed =
  | { kind: 'help'; command?: Command }
  | { kind: 'usage' }
  | { kind: 'version' }
  | { kind: 'command'; command: Command; steps: Step[]; json: boolean };

export const HELP = `Usage: ecs-gvisor <command> [options]

Makes gVisor's runsc Docker's default runtime on an Amazon ECS container instance, proves it,
and runs the ECS agent under runc in place of ecs-init.

Commands:
  bootstrap [--only STEP[,STEP...]]  converge once and exit (0 = converged and verified)
  run                                bootstrap, then supervise and watch until SIGTERM
  plan [--only STEP[,STEP...]] [--json]  print what bootstrap would change; change nothing
  status [--json]                    runtime, agent, registration and lifecycle state
  rollback [--only STEP[,STEP...]]   undo what bootstrap did
  check-config [--json]              check the configuration and the host; change nothing

Steps, in order: ${STEPS.join(', ')}

Options:
  --only STEP[,STEP...]  limit bootstrap, plan or rollback to these steps
  --json                 machine-readable answer (plan, status, check-config)
  -h, --help             show this help (ecs-gvisor <command> --help: that command's)
  -V, --version          show the version

Configuration: KEY=VALUE lines in /etc/ecs/ecs-gvisor.config (or $ECS_GVISOR_CONFIG),
overridden by environment variables of the same names; the keys are listed below. Documentation:
/usr/share/doc/ecs-gvisor (the rpm) or /usr/local/share/doc/ecs-gvisor (install.sh).
`;

/** Each command's own help: what it does, its options, its exit codes. */
export const COMMAND_HELP: Record<Command, string> = {
  bootstrap: `Usage: ecs-gvisor bootstrap [--only STEP[,STEP...]]

Converge the host once and exit: ecs-init stopped and disabled, runsc Docker's default runtime (merged
into daemon.json, applied by reload, proven with a probe, rolled back if not), the network rules, the
ECS agent under runc. Steps, in order: ${STEPS.join(', ')}.

Exit 0: converged and verified. 2: bad configuration or arguments; 3: a host file refused (nothing
changed); 4: Docker, runsc, systemctl or the network unavailable; 5: the sandbox not proven (rolled back);
16-31: not proven and not fully taken out of service (operations.md).
`,
  run: `Usage: ecs-gvisor run

What systemd starts: bootstrap, then supervise the agent and watch the sandbox, the registration and
the lifecycle hooks until SIGTERM. READY=1 once the sandbox is proven.
`,
  plan: `Usage: ecs-gvisor plan [--only STEP[,STEP...]] [--json]

Print what bootstrap would change (daemon.json diff, the agent's container, the rules), changing
nothing. Without Docker it shows what it can and names what it could not read (exit 4).
`,
  status: `Usage: ecs-gvisor status [--json]

The runtime (name, version, verified), the agent (container, runtime, health), the registration, the
sandbox audit, the lifecycle and the last errors. Exit 0 only when healthy (8 otherwise).
`,
  rollback: `Usage: ecs-gvisor rollback [--only STEP[,STEP...]]

Undo bootstrap: withdraw the verified attribute, restore daemon.json and reload Docker (the runtime entry
kept while a container created under it exists), remove the agent container, re-enable ecs-init, remove
the rules.
`,
  'check-config': `Usage: ecs-gvisor check-config [--json]

Check the configuration file, the ECS_GVISOR_* environment (an unknown variable is refused here, and only
warned about elsewhere) and the host: Docker's version, cgroup driver and runtimes, runsc, the agent's
ecs.config. Changes nothing. Exit 0 with no problem, 2 with every problem listed.
`,
};

/** Every option any command takes; which command takes which is checked below. */
const OPTIONS = {
  only: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/** Which commands take each option (help and version: all). */
const TAKES: Record<string, readonly Command[]> = { only: ['bootstrap', 'plan', 'rollback'], json: ['status', 'plan', 'check-config'] };

export function parseArgs(argv: readonly string[]): Parsed {
  const usage = (msg: string) => new EcsGvisorError('USAGE', `${msg} (see ecs-gvisor --help).`);
  if (argv.length === 0) return { kind: 'usage' };
  // Not strict: an option no command takes is named in our own sentence, after --help and --version.
  const { tokens } = nodeParseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  const options = tokens.filter((t) => t.kind === 'option');
  const named = (argv[0] === 'help' ? argv[1] : argv[0]) as Command | undefined;
  const about = named !== undefined && (COMMANDS as readonly string[]).includes(named) ? named : undefined;
  if (options.some((t) => t.name === 'help') || argv[0] === 'help') return about ? { kind: 'help', command: about } : { kind: 'help' };
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
 * What --version and a command's --help print, undefined for any other command line (a refused one
 * included: main says why; the global help lists the configuration keys, which main loads). Needs nothing
 * beyond this module, so the entry answers them before loading the rest.
 */
export function quickAnswer(argv: readonly string[]): string | undefined {
  try {
    const parsed = parseArgs(argv);
    if (parsed.kind === 'usage' || (parsed.kind === 'help' && !parsed.command)) return undefined;
    return answerOf(parsed);
  } catch {
    return undefined;
  }
}

/** The text help or --version prints (the global help without its list of keys); undefined for a command. */
export function answerOf(parsed: Parsed): string | undefined {
  if (parsed.kind === 'help') return parsed.command ? COMMAND_HELP[parsed.command] : HELP;
  if (parsed.kind === 'usage') return HELP;
  // The Node.js inside: the release executable carries its own, the bundle runs on the host's.
  if (parsed.kind === 'version') return `ecs-gvisor ${VERSION} (node ${process.version})\n`;
  return undefined;
}
