#!/usr/bin/env node
// The release's software bill of materials (CycloneDX 1.5 JSON), from the lockfiles alone: every package
// of the production dependency tree (package-lock.json, dev packages left out) and the Node.js the
// executable carries (tools/node/package-lock.json, this architecture's), each with its version, license,
// purl and the SHA-512 npm pinned. No timestamps or random serial: the same lockfiles give the same file.
//
//   node scripts/sbom.mjs [x64|arm64]      print it
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** npm's `sha512-<base64>` as CycloneDX's hex hash, or nothing for another algorithm. */
function hashes(integrity) {
  const m = /^sha512-([A-Za-z0-9+/=]+)$/.exec(integrity ?? '');
  return m ? [{ alg: 'SHA-512', content: Buffer.from(m[1], 'base64').toString('hex') }] : [];
}

/** A package's name from its lockfile path (`node_modules/@scope/name`, nested ones included). */
function nameOf(path) {
  return path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
}

/** The lockfile's license, else the installed package's own (old packages name it in `licenses`). */
function licenseOf(dir, path, p) {
  if (p.license) return p.license;
  try {
    const own = JSON.parse(readFileSync(join(dir, path, 'package.json'), 'utf8'));
    return own.license ?? own.licenses?.[0]?.type;
  } catch {
    return undefined;
  }
}

function component(dir, path, p) {
  const name = nameOf(path);
  const license = licenseOf(dir, path, p);
  const purlName = name.startsWith('@') ? `%40${name.slice(1)}` : name;
  return {
    type: 'library',
    'bom-ref': `pkg:npm/${purlName}@${p.version}`,
    name,
    version: p.version,
    purl: `pkg:npm/${purlName}@${p.version}`,
    ...(license ? { licenses: [{ license: /^[A-Za-z0-9.+-]+$/.test(license) ? { id: license } : { name: license } }] } : {}),
    hashes: hashes(p.integrity),
  };
}

/** The SBOM of one architecture's release. */
export function sbom(arch, dir = root) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
  const nodeLock = JSON.parse(readFileSync(join(dir, 'tools/node/package-lock.json'), 'utf8'));
  const prod = Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && !p.dev && !p.devOptional && !p.link)
    .map(([path, p]) => component(dir, path, p));
  const nodePath = `node_modules/node-linux-${arch}`;
  const node = nodeLock.packages[nodePath];
  if (!node) throw new Error(`no pinned Node.js for ${arch} in tools/node/package-lock.json`);
  const runtime = {
    ...component(join(dir, 'tools/node'), nodePath, node),
    type: 'platform',
    description: 'the Node.js inside the ecs-gvisor executable',
  };
  // One entry per package and version (npm may install the same one at several paths).
  const unique = new Map([...prod, runtime].map((c) => [c['bom-ref'], c]));
  const components = [...unique.values()].sort((a, b) => a['bom-ref'].localeCompare(b['bom-ref']));
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    version: 1,
    metadata: {
      component: {
        type: 'application',
        'bom-ref': `pkg:npm/${pkg.name}@${pkg.version}`,
        name: pkg.name,
        version: pkg.version,
        purl: `pkg:npm/${pkg.name}@${pkg.version}`,
        licenses: [{ license: { id: pkg.license } }],
      },
      properties: [{ name: 'linux-arch', value: arch }],
    },
    components,
    dependencies: [{ ref: `pkg:npm/${pkg.name}@${pkg.version}`, dependsOn: components.map((c) => c['bom-ref']) }],
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${JSON.stringify(sbom(process.argv[2] ?? 'x64'), null, 2)}\n`);
}
