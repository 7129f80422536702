// What the `ioasid` commands share: usage errors (exit 2), option parsing, and running one of the
// repository's Node scripts as a child with the terminal passed through.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** The package root (bin/cli/../..). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Wrong arguments: the CLI prints the message and the command's usage line, and exits 2. */
export class UsageError extends Error {}

/** A failure to report without a stack trace (exit 1). */
export class CliError extends Error {}

/** node:util parseArgs, with its errors turned into usage errors. */
export function parseOptions(argv, options, { positionals = false } = {}) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError(e.message);
  }
}

/**
 * Runs `node <script> ...args` from the package root with stdio inherited.
 * @returns its exit code (1 when it was killed by a signal).
 */
export function runNodeScript(script, args, missingHint) {
  const path = fileURLToPath(new URL(script, new URL('../../', import.meta.url)));
  if (!existsSync(path)) throw new CliError(`${script} not found: ${missingHint}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path, ...args], { cwd: ROOT, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
