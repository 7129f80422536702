/**
 * The layer rules of src/ (docs/architecture.md), checked on the import graph so the tree cannot
 * drift back: no edge from a lower layer to a higher one, no edge between sibling layers, no import
 * cycle (type-only imports included) except among the object files of src/iommufd/ (they refer to
 * each other as the kernel's private iommufd header lets its objects do), and device models under
 * src/viommu/<name>/ import only the public API (../../api) and files of their own folder.
 *
 * No dependencies: a small scanner blanks comments and reads every `import ... from`,
 * `import type`, `export ... from`, side-effect `import '...'` and dynamic `import('...')`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
const SRC = join(ROOT, 'src');

/**
 * The layers, lowest first. A file may import files of its own layer (folder) and of layers with a
 * lower rank; two layers of the same rank are siblings and may not import each other.
 * `generated/` is the Wasm binary embedded by scripts/build-wasm.mjs.
 */
export const LAYERS: readonly { layer: string; rank: number; rule: string }[] = [
  { layer: 'base', rank: 0, rule: 'errno, argument checks, ranges: imports nothing outside base/' },
  { layer: 'generated', rank: 0, rule: 'the embedded Wasm binary: imports nothing' },
  { layer: 'core', rank: 1, rule: 'the Wasm binding (module, memory layout, control block, RAM window): knows no FD or object' },
  { layer: 'dma', rank: 2, rule: 'what any thread may do: translation vocabulary, Translator, Batch, software DMA, fault log' },
  { layer: 'engine', rank: 2, rule: 'owner-side hardware state: domains, device/PASID contexts, registries' },
  { layer: 'iommufd', rank: 3, rule: 'the object model, one object type per file (cycles allowed inside)' },
  { layer: 'options.ts', rank: 4, rule: 'options of Iommu.create / addDevice' },
  { layer: 'snapshot', rank: 5, rule: 'save and restore of a whole engine' },
  { layer: 'iommu.ts', rank: 6, rule: 'the facade' },
  { layer: 'api.ts', rank: 7, rule: 'the public API barrel' },
  { layer: 'viommu', rank: 8, rule: 'device models: only ../../api and their own folder' },
  { layer: 'index.ts', rank: 9, rule: 'the package entry: api.ts and the device models' },
];
/** Files outside src/ that src/ may import, from any layer but base/ and generated/. */
const OUTSIDE_ALLOWED = new Set(['assembly/abi.ts']);
/** The only layer whose files may import each other in a cycle. */
const CYCLES_ALLOWED = 'iommufd';

/** Copies `src` with comments replaced by spaces; strings and template literals are kept. */
export function blankComments(src: string): string {
  let out = '';
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    const next = src[i + 1];
    if (c === '/' && next === '/') {
      while (i < src.length && src[i] !== '\n') { out += ' '; i++; }
    } else if (c === '/' && next === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += src.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === '\\' ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const IMPORT_FORMS = [
  /\bimport\s+(?:type\s+)?[\w*{}\s,$]*?\bfrom\s*(['"])([^'"]+)\1/g, // import x / { a } / * as m / type { T } from '...'
  /\bexport\s+(?:type\s+)?(?:\*(?:\s+as\s+\w+)?|\{[^}]*\})\s*from\s*(['"])([^'"]+)\1/g, // export * / { a } from '...'
  /\bimport\s*(['"])([^'"]+)\1/g, // import '...'
  /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g, // import('...')
];

/** Every module specifier a TypeScript source imports or re-exports, type-only ones included. */
export function importsOf(src: string): string[] {
  const code = blankComments(src);
  const found: string[] = [];
  for (const form of IMPORT_FORMS) for (const m of code.matchAll(form)) found.push(m[2]!);
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return /\.ts$/.test(name) && !/\.d\.ts$/.test(name) ? [p] : [];
  });
}

/** Resolves a relative specifier the way the bundler does (`x`, `x.ts`, `x.js` -> `x.ts`, `x/index.ts`). */
function resolveSpecifier(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined; // a package or node: builtin
  const base = resolve(dirname(from), spec).replace(/\.(js|ts)$/, '');
  for (const c of [base + '.ts', join(base, 'index.ts')]) {
    try {
      if (statSync(c).isFile()) return c;
    } catch {
      // try the next candidate
    }
  }
  return base; // unresolved: reported by the caller
}

/** The layer a src/ file belongs to: its first folder under src/, or its name at the top. */
function layerOf(file: string): string {
  return relative(SRC, file).split(/[\\/]/)[0]!;
}

const rankOf = new Map(LAYERS.map((l) => [l.layer, l.rank]));

interface Edge { from: string; to: string; spec: string }

function graph(): { files: string[]; edges: Edge[] } {
  const files = sourceFiles(SRC);
  const edges: Edge[] = [];
  for (const f of files) {
    for (const spec of importsOf(readFileSync(f, 'utf8'))) {
      const to = resolveSpecifier(f, spec);
      if (to !== undefined) edges.push({ from: f, to, spec });
    }
  }
  return { files, edges };
}

/** Why an edge breaks the layer rules, or undefined when it keeps them. */
function violation(e: Edge): string | undefined {
  const from = layerOf(e.from);
  const rel = relative(ROOT, e.to).split('\\').join('/');
  if (from === 'viommu') {
    const own = relative(SRC, e.from).split(/[\\/]/).slice(0, 2).join('/');
    const target = relative(SRC, e.to).split(/[\\/]/).join('/');
    if (target === 'api.ts' || target.startsWith(own + '/')) return undefined;
    return `a device model imports ${rel}: only ../../api and its own folder (src/${own}/)`;
  }
  if (!e.to.startsWith(SRC + '/')) {
    if (OUTSIDE_ALLOWED.has(rel) && rankOf.get(from)! > 0) return undefined;
    return `imports ${rel}, outside src/ (only ${[...OUTSIDE_ALLOWED].join(', ')}, and not from base/ or generated/)`;
  }
  const to = layerOf(e.to);
  if (from === to) return undefined;
  const rf = rankOf.get(from);
  const rt = rankOf.get(to);
  if (rf === undefined || rt === undefined) return `no layer is ranked for ${rf === undefined ? from : to} (add it to LAYERS)`;
  if (rt > rf) return `upward edge: ${from} (rank ${rf}) imports ${to} (rank ${rt})`;
  if (rt === rf) return `edge between sibling layers ${from} and ${to}`;
  return undefined;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cycles(files: string[], edges: Edge[]): string[][] {
  const out = new Map(files.map((f) => [f, [] as string[]]));
  for (const e of edges) out.get(e.from)?.push(e.to);
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of out.get(v) ?? []) {
      if (!out.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || out.get(v)!.includes(v)) found.push(scc.map((f) => relative(ROOT, f)).sort());
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return found;
}

describe('the import scanner', () => {
  it('reads every import form, type-only and dynamic included, and ignores comments', () => {
    const src = [
      "import * as abi from '../assembly/abi';",
      "import type { A, B } from './a';",
      "import { c, type D } from \"./c.js\";",
      "import d, { e } from './d';",
      'import {\n  f,\n  g,\n} from \'./f\';',
      "import './side-effect';",
      "export * from './star';",
      "export type { T } from './t';",
      "export { x as y } from './x';",
      "const m = await import('./dynamic');",
      "// import { no } from './line-comment';",
      "/* export * from './block-comment'; */",
      "const s = 'a // not a comment'; import { h } from './h';",
    ].join('\n');
    expect(importsOf(src).sort()).toEqual(
      ['../assembly/abi', './a', './c.js', './d', './dynamic', './f', './h', './side-effect', './star', './t', './x'].sort(),
    );
  });

  it('finds the edges of src/ (the facade imports the object model)', () => {
    const { edges } = graph();
    const rel = (p: string) => relative(ROOT, p).split('\\').join('/');
    expect(edges.some((e) => rel(e.from) === 'src/iommu.ts' && rel(e.to) === 'src/iommufd/iommufd.ts')).toBe(true);
    expect(edges.some((e) => rel(e.from) === 'src/index.ts' && rel(e.to) === 'src/api.ts')).toBe(true);
  });
});

describe('the layers of src/', () => {
  it('every file lies in a ranked layer', () => {
    const unranked = graph().files.map(layerOf).filter((l) => !rankOf.has(l));
    expect([...new Set(unranked)]).toEqual([]);
  });

  it('every import resolves to a file', () => {
    const missing = graph().edges.filter((e) => e.to.startsWith(SRC) && !e.to.endsWith('.ts')).map((e) => `${relative(ROOT, e.from)}: '${e.spec}'`);
    expect(missing).toEqual([]);
  });

  it('no edge goes up or sideways; device models import only the public API', () => {
    const bad = graph().edges.flatMap((e) => {
      const why = violation(e);
      return why ? [`${relative(ROOT, e.from)} -> '${e.spec}': ${why}`] : [];
    });
    expect(bad).toEqual([]);
  });

  it(`no import cycle outside src/${CYCLES_ALLOWED}/ (type-only imports included)`, () => {
    const { files, edges } = graph();
    const outside = cycles(files, edges).filter((c) => !c.every((f) => f.split(/[\\/]/)[1] === CYCLES_ALLOWED));
    expect(outside).toEqual([]);
  });

  it('the rules reject what they must (a model importing internals, an upward or sibling edge)', () => {
    const f = (p: string) => join(SRC, p);
    expect(violation({ from: f('viommu/vtd/vtd.ts'), to: f('iommufd/ioas.ts'), spec: '' })).toMatch(/device model/);
    expect(violation({ from: f('viommu/vtd/vtd.ts'), to: f('api.ts'), spec: '' })).toBeUndefined();
    expect(violation({ from: f('viommu/vtd/vtd.ts'), to: f('viommu/vtd/regs.ts'), spec: '' })).toBeUndefined();
    expect(violation({ from: f('viommu/vtd/vtd.ts'), to: f('viommu/smmu/regs.ts'), spec: '' })).toMatch(/device model/);
    expect(violation({ from: f('viommu/vtd/vtd.ts'), to: join(ROOT, 'assembly/abi.ts'), spec: '' })).toMatch(/device model/);
    expect(violation({ from: f('viommu/vtd/vtd.ts'), to: f('index.ts'), spec: '' })).toMatch(/device model/);
    expect(violation({ from: f('engine/engine.ts'), to: f('iommufd/device.ts'), spec: '' })).toMatch(/upward/);
    expect(violation({ from: f('dma/dma.ts'), to: f('engine/engine.ts'), spec: '' })).toMatch(/sibling/);
    expect(violation({ from: f('base/args.ts'), to: join(ROOT, 'assembly/abi.ts'), spec: '' })).toMatch(/outside src/);
    expect(violation({ from: f('index.ts'), to: f('viommu/vtd/index.ts'), spec: '' })).toBeUndefined();
    expect(cycles([f('a.ts'), f('b.ts')], [{ from: f('a.ts'), to: f('b.ts'), spec: '' }, { from: f('b.ts'), to: f('a.ts'), spec: '' }])).toHaveLength(1);
  });
});
