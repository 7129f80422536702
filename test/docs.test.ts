// Docs that run: every ```ts / ```js code block of README.md and docs/**/*.md (not the generated
// docs/api/) is extracted, written as a module into build/docs-test/ (inside the repository, so
// `import ... from 'ioasid'` resolves through the package's self-reference to dist/, as it does for
// a user), TypeScript stripped by esbuild, and run by node as a child process: it must exit 0. A
// block whose fence says `no-run` (```ts no-run) is skipped; every other block must be a complete
// module that imports from 'ioasid', with its setup visible in the block itself.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { transformSync } from 'esbuild';
import { afterAll, describe, expect, test } from 'vitest';
import { repoRoot, runProcess } from './run-process';

const built = readdirSync(repoRoot).includes('dist') && readdirSync(join(repoRoot, 'dist')).includes('index.js');
const OUT = join(repoRoot, 'build', 'docs-test');
const LANGS: Record<string, 'ts' | 'js'> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' };

interface Block {
  /** `README.md:39`: the file and the line of the opening fence. */
  where: string;
  lang: 'ts' | 'js';
  run: boolean;
  code: string;
}

/** README.md and every Markdown file under docs/ except the generated API reference. */
function markdownFiles(): string[] {
  const docs = join(repoRoot, 'docs');
  let underDocs: string[] = [];
  try {
    underDocs = readdirSync(docs, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.md') && !f.startsWith('api/'))
      .map((f) => join(docs, f));
  } catch {
    // no docs/ folder
  }
  return [join(repoRoot, 'README.md'), ...underDocs.sort()];
}

/** The fenced blocks of one Markdown file whose language is TS or JS. */
export function extractBlocks(markdown: string, file: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const lang = LANGS[open[1]!.toLowerCase()];
    if (lang) blocks.push({ where: `${file}:${start + 1}`, lang, run: !/\bno-run\b/.test(open[2]!), code: body.join('\n') });
  }
  return blocks;
}

const blocks = markdownFiles().flatMap((path) => extractBlocks(readFileSync(path, 'utf8'), relative(repoRoot, path)));
const runnable = blocks.filter((b) => b.run);
let ran = 0;

afterAll(() => {
  console.log(`docs: ${ran} of ${blocks.length} code blocks ran (${blocks.length - runnable.length} marked no-run) from ${markdownFiles().length} files`);
  rmSync(OUT, { recursive: true, force: true });
});

describe.skipIf(!built)('code blocks of the README and docs/ run', () => {
  test('the extractor finds the blocks and honours no-run', () => {
    const md = ['text', '```ts', "import { Iommu } from 'ioasid';", '```', '```ts no-run', 'x;', '```', '```sh', 'npm i', '```'].join('\n');
    expect(extractBlocks(md, 'x.md')).toEqual([
      { where: 'x.md:2', lang: 'ts', run: true, code: "import { Iommu } from 'ioasid';" },
      { where: 'x.md:5', lang: 'ts', run: false, code: 'x;' },
    ]);
    expect(runnable.length).toBeGreaterThan(0);
  });

  test.each(runnable.map((b) => [b.where, b] as const))('%s', async (where, block) => {
    expect(block.code, `${where}: a block imports what it uses from 'ioasid'`).toMatch(/from '(ioasid)'/);
    const source = block.lang === 'ts' ? transformSync(block.code, { loader: 'ts', format: 'esm', target: 'es2022' }).code : block.code;
    mkdirSync(OUT, { recursive: true });
    const file = join(OUT, `${where.replace(/[^\w]+/g, '-')}.mjs`);
    writeFileSync(file, source);
    const r = await runProcess(process.execPath, [file]);
    expect(r.code, `${where} failed:\n${r.stderr}${r.stdout}`).toBe(0);
    ran++;
  }, 30_000);
});
