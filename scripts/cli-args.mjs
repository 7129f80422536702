// Argument parsing for the repository's scripts (bench/, scripts/): node:util parseArgs in strict
// mode, plus -h/--help. A wrong argument prints the message and the script's usage and exits 2;
// --help prints the usage and exits 0. (The published CLI has its own, bin/cli/common.mjs.)
import { parseArgs } from 'node:util';

/**
 * @param usage the script's usage text (first line `usage: ...`)
 * @param options parseArgs options (help is added)
 * @param argv the arguments (default: process.argv.slice(2))
 * @param check optional (values, positionals) => message | undefined: value checks beyond the types
 * @returns { values, positionals }
 */
export function parseScriptArgs({ usage, options, argv = process.argv.slice(2), allowPositionals = false, check }) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (e) {
    exitWithUsage(e.message, usage);
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  const problem = check?.(parsed.values, parsed.positionals);
  if (problem) exitWithUsage(problem, usage);
  return parsed;
}

function exitWithUsage(message, usage) {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

/** For `check`: a message when `values[name]` is set and not a number that `ok` accepts. */
export function badNumber(values, name, ok, expected) {
  if (values[name] === undefined) return undefined;
  const n = Number(values[name]);
  return Number.isFinite(n) && ok(n) ? undefined : `--${name}: expected ${expected}, got '${values[name]}'`;
}
