// Dispatches `ioasid <command> [args]` to a command module ({ summary, usage, help, run(argv) }),
// answers --help and --version, and turns errors into messages and exit statuses: 2 for wrong
// arguments (with the usage line), 1 for failures, otherwise the command's own status.
import { readFileSync } from 'node:fs';
import { CliError, UsageError } from './common.mjs';
import * as demo from './demo.mjs';
import * as replay from './replay.mjs';

const COMMANDS = { demo, replay };
const VERSION = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

const HELP = `usage: ioasid <command> [options]

ioasid ${VERSION}: an IOMMU translation engine for emulators (Linux iommufd's FD model, Wasm hot path).

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)}${c.summary}`).join('\n')}

Options:
  -h, --help      this text; 'ioasid <command> --help' for a command's
  -v, --version   the package version

The benchmark suite is not part of the package: in a checkout of the repository, npm run bench.`;

const isHelp = (arg) => arg === '--help' || arg === '-h';

/** @returns the process exit status. */
export async function main(argv) {
  const [name, ...rest] = argv;
  if (name === undefined || isHelp(name) || name === 'help') {
    const topic = name === 'help' && Object.hasOwn(COMMANDS, rest[0] ?? '') ? COMMANDS[rest[0]] : undefined;
    if (name === undefined) console.error(HELP);
    else console.log(topic ? topic.help : HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    console.log(VERSION);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    console.error(`ioasid: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')}; ioasid --help)`);
    return 2;
  }
  // `--` ends the options: a --help after it belongs to the command's arguments.
  const end = rest.indexOf('--');
  if ((end < 0 ? rest : rest.slice(0, end)).some(isHelp)) {
    console.log(command.help);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`ioasid ${name}: ${e.message}\nusage: ${command.usage}  (ioasid ${name} --help)`);
      return 2;
    }
    if (e instanceof CliError) {
      console.error(`ioasid ${name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
