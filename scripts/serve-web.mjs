#!/usr/bin/env node
// A tiny static server for the browser demo (examples/web/), Node's `http` only. It serves the
// package bundle (dist/) and the examples (examples/) from the repository root, so the page and its
// workers import the same modules as the Node demo. Those import the package by its name
// (`from 'ioasid'`, resolved by Node through package.json "exports"); a browser cannot resolve a
// bare name (and module workers get no import map), so the server rewrites that one specifier in
// the scripts it serves to the bundle's URL, as bundler dev servers do.
//
// Every response carries COOP/COEP (cross-origin isolation: SharedArrayBuffer, worker translators),
// except under the route /no-isolation/ (the same files without them: the engine falls back to a
// single thread and the page shows why). `--no-isolation` serves everything without them.
//
//   npm run demo:web                               build, then serve on http://127.0.0.1:8080/
//   node scripts/serve-web.mjs [--port N] [--host H] [--no-isolation]
// `startServer()` is also what the e2e test uses (port 0 = an ephemeral port).
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { badNumber, parseScriptArgs } from './cli-args.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Only these folders of the repository are served. */
const SERVED_DIRS = ['dist', 'examples'];
const DEMO_PATH = '/examples/web/';
export const NO_ISOLATION_ROUTE = '/no-isolation';

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.cjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ts': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};

/** `from 'ioasid'` / `import('ioasid')` in a served script → the bundle, under the same route prefix. */
const PACKAGE_SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*)(['"])ioasid\2/g;
const SCRIPT = new Set(['.js', '.mjs']);

function scriptWithBundleUrl(file, prefix) {
  return readFileSync(file, 'utf8').replace(PACKAGE_SPECIFIER, (_, keyword, quote) => `${keyword}${quote}${prefix}/dist/index.js${quote}`);
}

/** The file a URL path names, or undefined when it is outside the served folders. */
function fileFor(urlPath) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  const file = normalize(join(ROOT, path.endsWith('/') ? `${path}index.html` : path));
  const inside = SERVED_DIRS.some((dir) => file.startsWith(join(ROOT, dir) + sep));
  return inside ? file : undefined;
}

function handle(req, res, { isolation }) {
  let { pathname } = new URL(req.url ?? '/', 'http://localhost');
  let isolated = isolation;
  if (pathname === NO_ISOLATION_ROUTE || pathname.startsWith(`${NO_ISOLATION_ROUTE}/`)) {
    isolated = false;
    pathname = pathname.slice(NO_ISOLATION_ROUTE.length) || '/';
  }
  const headers = { 'Cache-Control': 'no-store', ...(isolated ? ISOLATION_HEADERS : {}) };
  const prefix = isolated === isolation ? '' : NO_ISOLATION_ROUTE;

  if (pathname === '/') {
    res.writeHead(302, { ...headers, Location: `${prefix}${DEMO_PATH}` }).end();
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
    return;
  }
  const file = fileFor(pathname);
  let stat;
  try {
    stat = file && statSync(file);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory()) {
    res.writeHead(301, { ...headers, Location: `${prefix}${pathname}/` }).end();
    return;
  }
  if (!stat?.isFile()) {
    res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end(`not found: ${pathname}\n`);
    return;
  }
  const type = TYPES[extname(file)] ?? 'application/octet-stream';
  if (SCRIPT.has(extname(file)) && file.startsWith(join(ROOT, 'examples') + sep)) {
    const body = Buffer.from(scriptWithBundleUrl(file, prefix));
    res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': stat.size });
  if (req.method === 'HEAD') res.end();
  else createReadStream(file).pipe(res);
}

/**
 * Starts the server. @returns { url, noIsolationUrl, close() } once it listens; `url` is the demo
 * page with the default headers, `noIsolationUrl` the same page without COOP/COEP.
 */
export function startServer({ port = 0, host = '127.0.0.1', isolation = true } = {}) {
  const server = createServer((req, res) => handle(req, res, { isolation }));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      const origin = `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
      resolve({
        url: `${origin}${DEMO_PATH}`,
        noIsolationUrl: `${origin}${NO_ISOLATION_ROUTE}${DEMO_PATH}`,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

async function main() {
  const { values } = parseScriptArgs({
    usage: 'usage: node scripts/serve-web.mjs [--port N (8080; 0 = any)] [--host H (127.0.0.1)] [--no-isolation]',
    options: {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      'no-isolation': { type: 'boolean', default: false },
    },
    check: (v) => badNumber(v, 'port', (n) => Number.isInteger(n) && n >= 0 && n <= 65535, '0..65535'),
  });
  const port = Number(values.port);
  const isolation = !values['no-isolation'];
  const { url, noIsolationUrl } = await startServer({ port, host: values.host, isolation });
  console.log(`ioasid browser demo`);
  console.log(`  ${url}  ${isolation ? '(cross-origin isolated: worker translators)' : '(no COOP/COEP: single-threaded)'}`);
  if (isolation) console.log(`  ${noIsolationUrl}  (no COOP/COEP: single-threaded fallback)`);
  console.log('Ctrl-C stops the server.');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    console.error(`serve-web: ${e.message}`);
    process.exitCode = 1;
  });
}
