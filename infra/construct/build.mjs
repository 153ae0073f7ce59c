// Builds the package: the construct compiled to dist/ (JavaScript and its declarations), the userdata
// template it fills copied beside it, and the license. TypeScript and aws-cdk-lib come from the
// repository (the root's TypeScript, infra's aws-cdk-lib): `npm ci` and `npm ci --prefix infra` first.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('./', import.meta.url));
const repo = fileURLToPath(new URL('../../', import.meta.url));
const tsc = `${repo}node_modules/typescript/bin/tsc`;
for (const [path, how] of [
  [tsc, 'npm ci'],
  [`${repo}infra/node_modules/aws-cdk-lib`, 'npm ci --prefix infra'],
]) {
  if (!existsSync(path)) {
    console.error(`ecs-gvisor-cdk build: ${path} is missing; run \`${how}\` in the repository first`);
    process.exit(1);
  }
}
rmSync(`${here}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', `${here}tsconfig.json`], { stdio: 'inherit' });
copyFileSync(`${repo}scripts/userdata.sh`, `${here}dist/userdata.sh`);
copyFileSync(`${repo}LICENSE`, `${here}LICENSE`);
