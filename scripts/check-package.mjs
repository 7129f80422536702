#!/usr/bin/env node
// The package as a user gets it: `npm pack` (its prepack script builds), the tarball installed into
// an empty scratch project in a temp dir (offline: ioasid has no runtime dependencies), then
//   - its contents: what must ship (dist, LICENSE, ...) and what must not (src/, test/, bench/);
//   - its declarations: only the exported API (no internal class or interface a public signature
//     drags in), no generic typed arrays (`Uint32Array<ArrayBuffer>` needs TypeScript 5.7);
//   - imported as ESM and as CJS, each doing a first translation;
//   - its CLI (`ioasid --version`, `ioasid demo --quick`: the shipped examples, self-referencing);
//   - a TypeScript consumer type-checked with `skipLibCheck: false` by every compiler in
//     TYPESCRIPTS: the oldest TypeScript the package claims (README "Install") up to the newest.
// The compilers come from this repository's node_modules (exact-pinned dev dependencies), so the
// check needs the registry for nothing. Exit status 1 on the first failure, 2 on wrong arguments.
//
//   node scripts/check-package.mjs [--keep]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const USAGE = `usage: node scripts/check-package.mjs [--keep]

Packs the package, installs the tarball into a scratch project and uses it as ESM, CJS, CLI and
from TypeScript (skipLibCheck off) with the oldest and the newest supported TypeScript.

Options:
  --keep       keep the scratch directory (its path is printed)
  -h, --help   this text`;

/** [label, the compiler's bin script in this repository's node_modules]; the first is the oldest claimed. */
const TYPESCRIPTS = [
  ['typescript 5.6 (oldest claimed)', 'node_modules/typescript-oldest/bin/tsc'],
  ['typescript 6.0', 'node_modules/typescript/bin/tsc6'],
  ['typescript 7 (newest)', 'node_modules/@typescript/native/bin/tsc'],
];

/** Must be in the tarball (paths inside `package/`). */
const MUST_SHIP = ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/index.js', 'dist/index.cjs',
  'dist/index.d.ts', 'dist/index.d.cts', 'bin/ioasid.mjs', 'examples/emulated-machine.mjs'];
/** Must not be: sources, tests, the benchmark suite and repository tooling. */
const MUST_NOT_SHIP = /^(src|test|bench|assembly|scripts|\.ci)\//;

function parseOptions() {
  try {
    return parseArgs({ options: { keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }).values;
  } catch (e) {
    console.error(`check-package: ${e.message}\n${USAGE}`);
    process.exit(2);
  }
}

/**
 * Problems of a bundled declaration file: top-level declarations that are not exported (internals
 * visible in editors through a public signature) and generic typed arrays (TypeScript >= 5.7 only).
 */
function declarationProblems(dts) {
  const exported = new Set([...dts.matchAll(/^export \{([^}]*)\}/gm)].flatMap((m) => m[1].split(',').map((s) => s.trim().replace(/^type /, '').split(' as ')[0])));
  const declared = [...dts.matchAll(/^(?:declare )?(?:abstract )?(?:class|interface|type|const|function|enum) (\w+)/gm)].map((m) => m[1]);
  const internal = [...new Set(declared.filter((name) => !exported.has(name)))];
  const generic = [...new Set(dts.match(/\b(?:Big)?(?:Uint|Int|Float)(?:8|16|32|64)(?:Clamped)?Array<[^>]*>/g) ?? [])];
  return [
    ...(internal.length ? [`not exported but declared (internals in the public types): ${internal.join(', ')}`] : []),
    ...(generic.length ? [`generic typed arrays (TypeScript >= 5.7 only): ${generic.join(', ')}`] : []),
  ];
}

const run = (file, args, cwd) => execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function step(name, fn) {
  try {
    const detail = fn();
    console.log(`  ok    ${name}${detail ? `: ${detail}` : ''}`);
  } catch (e) {
    console.log(`  FAIL  ${name}\n${String(e.stdout ?? '')}${String(e.stderr ?? '')}${e.stdout || e.stderr ? '' : e.message}`);
    throw new Error(`check-package: ${name} failed`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// What a user writes first (README "Install"): one IOMMU, one FD, one mapping, one translation.
const FIRST_TRANSLATION = `
const iommu = await Iommu.create();
const nic = iommu.addDevice({ bdf: '0000:03:00.0' });
const fd = iommu.open();
const ioas = fd.ioasAlloc();
fd.ioasMap(ioas, { iova: 0x10_0000n, length: 0x1000n, phys: 0x8000_0000n });
nic.attach(fd.hwptAlloc({ devId: nic.bind(fd), ptId: ioas }));
const t = iommu.translate(nic.rid, NO_PASID, 0x10_0123n, Access.Read);
if (!t.ok || t.phys !== 0x8000_0123n) throw new Error('unexpected translation ' + String(t.phys));
const miss = iommu.translate(nic.rid, NO_PASID, 0x20_0000n, Access.Read);
if (miss.ok || miss.fault?.reason !== 'not-present') throw new Error('expected a not-present fault');
`;

const ESM = `import { Iommu, Access, NO_PASID } from 'ioasid';
${FIRST_TRANSLATION}
console.log('esm', t.phys.toString(16));
`;

const CJS = `const { Iommu, Access, NO_PASID } = require('ioasid');
(async () => {
${FIRST_TRANSLATION}
console.log('cjs', t.phys.toString(16));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// The types a consumer relies on: the public names, parameter types that refuse wrong values
// (@ts-expect-error fails the check if a wrong call type-checks) and the shapes of the results.
const TS_CONSUMER = `import { Iommu, Access, NO_PASID, IommuError, Translator, type IommuFd, type Translation } from 'ioasid';
${FIRST_TRANSLATION}
const result: Translation = t;
const phys: bigint | undefined = result.ok ? result.phys : undefined;
const owner: IommuFd = fd;
owner.ioasUnmap(ioas, 0x10_0000n, 0x1000n);
try {
  fd.pasidFree(77);
} catch (e) {
  if (e instanceof IommuError) console.log(e.errno);
}
const rw: Access = Access.Read | Access.Write;
void Translator; void phys; void rw;
// @ts-expect-error bind takes an IommuFd
nic.bind(42);
// @ts-expect-error attach takes an object ID (a number)
nic.attach('hwpt');
`;

const TS_CONFIG = {
  compilerOptions: {
    target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022', 'dom'], types: [],
    strict: true, noEmit: true, skipLibCheck: false,
  },
  files: ['consumer.mts', 'consumer.cts'],
};

function main() {
  const { keep, help } = parseOptions();
  if (help) {
    console.log(USAGE);
    return;
  }
  const scratch = mkdtempSync(join(tmpdir(), 'ioasid-check-package-'));
  console.log(`check-package: scratch project ${scratch}`);
  try {
    let tarball;
    step('npm pack (prepack builds dist/)', () => {
      const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch], ROOT).match(/^\[[\s\S]*\]\s*$/m)[0]);
      tarball = join(scratch, info.filename);
      const paths = info.files.map((f) => f.path);
      const missing = MUST_SHIP.filter((p) => !paths.includes(p));
      assert(missing.length === 0, `missing from the tarball: ${missing.join(', ')}`);
      const extra = paths.filter((p) => MUST_NOT_SHIP.test(p));
      assert(extra.length === 0, `must not ship: ${extra.join(', ')}`);
      return `${info.filename}, ${info.entryCount} files, ${(info.size / 1024).toFixed(0)} kB packed, ${(info.unpackedSize / 1024).toFixed(0)} kB unpacked`;
    });

    step('declarations: only the exported API', () => {
      const problems = ['index.d.ts', 'index.d.cts'].flatMap((f) =>
        declarationProblems(readFileSync(join(ROOT, 'dist', f), 'utf8')).map((p) => `${f}: ${p}`));
      assert(problems.length === 0, problems.join('\n'));
      return undefined;
    });

    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }, null, 2));
    step('npm install <tarball> (offline)', () => {
      run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], scratch);
      const installed = JSON.parse(readFileSync(join(scratch, 'node_modules/ioasid/package.json'), 'utf8'));
      return `ioasid ${installed.version}, runtime dependencies: ${Object.keys(installed.dependencies ?? {}).length}`;
    });

    writeFileSync(join(scratch, 'esm.mjs'), ESM);
    writeFileSync(join(scratch, 'cjs.cjs'), CJS);
    step('import as ESM', () => run(process.execPath, ['esm.mjs'], scratch).trim());
    step('require as CJS', () => run(process.execPath, ['cjs.cjs'], scratch).trim());
    const cli = join(scratch, 'node_modules/.bin/ioasid');
    step('ioasid --version', () => run(cli, ['--version'], scratch).trim());
    step('ioasid demo --quick (the shipped examples)', () => {
      const out = run(cli, ['demo', '--quick'], scratch);
      assert(/PASS: all \d+ checks/.test(out), `no PASS line in:\n${out}`);
      return out.match(/PASS: all \d+ checks/)[0];
    });

    writeFileSync(join(scratch, 'consumer.mts'), TS_CONSUMER);
    writeFileSync(join(scratch, 'consumer.cts'), `import ioasid = require('ioasid');\nconst width: number = ioasid.Iommu.createSync().addressWidth;\nexport { width };\n`);
    writeFileSync(join(scratch, 'tsconfig.json'), JSON.stringify(TS_CONFIG, null, 2));
    for (const [label, bin] of TYPESCRIPTS) {
      step(`type-check a consumer (ESM + CJS, skipLibCheck: false) with ${label}`, () => {
        const version = run(process.execPath, [join(ROOT, bin), '--version'], scratch).trim();
        run(process.execPath, [join(ROOT, bin), '-p', 'tsconfig.json'], scratch);
        return version;
      });
    }
    console.log('check-package: all checks passed');
  } finally {
    if (keep) console.log(`check-package: kept ${scratch}`);
    else rmSync(scratch, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
}
