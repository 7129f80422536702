// `ioasid demo`: the Node demo (examples/emulated-machine.mjs, what `npm start` runs after its build).
import { parseOptions, runNodeScript } from './common.mjs';

export const summary = 'run the emulated machine: two VMs, five devices on worker threads, a rogue';
export const usage = 'ioasid demo [--quick | --seconds N]';
export const help = `usage: ${usage}

Runs ioasid's user application: an emulated machine with two VMs, each on its own ioasid FD, five
PCI device models doing DMA from worker threads while the owner remaps underneath them, and a rogue
device refused at authorization and faulted on the DMA path. Prints each FD's objects, the devices'
attachments, translation rates and faults by reason, then its isolation checks.

Options:
  --quick       about 0.3 s of DMA (default: about 1.5 s)
  --seconds N   N seconds of DMA
  -h, --help    this text

Exit status: 0 when every check passed, 1 when one failed, 2 on wrong arguments.`;

export async function run(argv) {
  // Checked here so a typo gets this command's usage; the demo script checks the values.
  parseOptions(argv, { quick: { type: 'boolean' }, seconds: { type: 'string' } });
  return runNodeScript('examples/emulated-machine.mjs', argv, 'the examples are part of the package; reinstall it');
}
