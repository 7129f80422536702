// `ioasid demo`: the Node demo (examples/emulated-machine.mjs, what `npm start` runs after its build).
import { UsageError, parseOptions, runNodeScript } from './common.mjs';

export const summary = 'run the emulated machine: two VMs, five devices on worker threads, a rogue';
export const usage = 'ioasid demo [--quick | --seconds N]';
export const help = `usage: ${usage}

Runs ioasid's user application: an emulated machine with two VMs, each on its own ioasid FD, five
PCI device models doing DMA from worker threads while the owner remaps underneath them, and a rogue
device refused at authorization and faulted on the DMA path. Shows progress while the devices run,
then each FD's objects, the devices' attachments, translation rates and faults by reason, then its
isolation checks.

Some faults are expected and the summary says why: VM B unmaps and remaps its NIC's hot-plug RX
pool while the NIC runs (DMA there while it is unmapped must fault), and every DMA the rogue aims
at VM A must fault. Any other fault fails the checks.

Options:
  --quick       about 0.3 s of DMA (default: about 1.5 s)
  --seconds N   N seconds of DMA (a positive number, e.g. 0.5 or 10)
  -h, --help    this text

Exit status: 0 when every check passed, 1 when one failed, 2 on wrong arguments.`;

export async function run(argv) {
  const { values } = parseOptions(argv, { quick: { type: 'boolean' }, seconds: { type: 'string' } });
  if (values.seconds !== undefined) {
    if (values.quick) throw new UsageError('--quick and --seconds exclude each other');
    const seconds = Number(values.seconds);
    if (!(Number.isFinite(seconds) && seconds > 0)) throw new UsageError(`--seconds: expected a positive number, got '${values.seconds}'`);
  }
  return runNodeScript('examples/emulated-machine.mjs', argv, 'the examples are part of the package; reinstall it');
}
