// `ioasid replay TRACE`: replays a DMA trace (format: trace.mjs FORMAT) through a fresh IOMMU and
// prints translation and fault statistics. Streams the file chunk by chunk; shows progress on
// stderr when it is a terminal (or with --progress).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Iommu, IommuError } from '../../dist/index.js';
import { CliError, UsageError, parseOptions } from './common.mjs';
import { formatReport } from './report.mjs';
import { Replayer } from './replayer.mjs';
import { FORMAT, TraceError, parseLine } from './trace.mjs';

export const summary = 'replay a DMA trace through the IOMMU; print translation and fault statistics';
export const usage = 'ioasid replay TRACE [--json] [--progress]';
export const help = `usage: ${usage}

Replays TRACE (a file, or - for standard input) through a fresh IOMMU (48-bit IOVAs, 20-bit
PASIDs): its setup lines build one ioasid FD with its address spaces and devices, its DMA lines
are translated in batches, in file order. Prints requests, translations, faults by reason (in all
and per device) and throughput.

Options:
  --json        print the statistics as JSON instead of text
  --progress    show progress on stderr even when it is not a terminal
  -h, --help    this text

Exit status: 0 replayed (faults are results, not errors), 1 a malformed line or a setup call the
IOMMU refused (the message names the line), 2 wrong arguments.

${FORMAT}`;

const PROGRESS_EVERY_MS = 250;

/** The input's lines, a chunk's worth at a time (far cheaper than a line per await). */
async function* lineChunks(input) {
  input.setEncoding('utf8');
  let rest = '';
  for await (const chunk of input) {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop();
    yield lines;
  }
  if (rest !== '') yield [rest];
}

/**
 * Progress on stderr: a line rewritten in place on a terminal; otherwise (--progress into a file
 * or pipe) a line per second and a last one at the end.
 */
function progressMeter(name, totalBytes, input) {
  const tty = process.stderr.isTTY;
  let next = performance.now() + PROGRESS_EVERY_MS;
  const line = (lines) => {
    const share = totalBytes ? ` (${Math.floor((100 * input.bytesRead) / totalBytes)} %)` : '';
    return `replaying ${name}: ${lines.toLocaleString('en-US')} lines${share}`;
  };
  return {
    tick(lines) {
      if (performance.now() < next) return;
      next = performance.now() + (tty ? PROGRESS_EVERY_MS : 1000);
      process.stderr.write(tty ? `\r${line(lines)}\x1b[K` : `${line(lines)}\n`);
    },
    done(lines) {
      process.stderr.write(tty ? '\r\x1b[K' : `${line(lines)}\n`);
    },
  };
}

async function openTrace(path) {
  if (path === '-') return { name: 'stdin', input: process.stdin, bytes: undefined };
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw new CliError(`cannot read trace '${path}': ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  if (!info.isFile()) throw new CliError(`cannot read trace '${path}': not a file`);
  return { name: basename(path), input: createReadStream(path), bytes: info.size };
}

/** Replays the trace; @returns its statistics. @throws CliError naming the line that failed. */
export async function replayTrace(path, { progress = false } = {}) {
  const { name, input, bytes } = await openTrace(path);
  const replayer = new Replayer(await Iommu.create());
  const meter = progress ? progressMeter(name, bytes, input) : undefined;
  const started = performance.now();
  let lines = 0;
  try {
    for await (const chunk of lineChunks(input)) {
      for (const line of chunk) {
        lines++;
        const record = parseLine(line);
        if (record) replayer.apply(record);
      }
      meter?.tick(lines);
    }
    replayer.flush();
  } catch (e) {
    if (e instanceof TraceError) throw new CliError(`${path}:${lines}: ${e.message}`);
    if (e instanceof IommuError) throw new CliError(`${path}:${lines}: the IOMMU refused it: ${e.message}`);
    throw e;
  } finally {
    meter?.done(lines);
    input.destroy?.();
  }
  return { trace: path, lines, ...replayer.result(), seconds: (performance.now() - started) / 1000 };
}

export async function run(argv) {
  const { values, positionals } = parseOptions(argv, { json: { type: 'boolean' }, progress: { type: 'boolean' } }, { positionals: true });
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `expected one TRACE, got ${positionals.length}` : 'missing TRACE (a file, or - for standard input)');
  const statistics = await replayTrace(positionals[0], { progress: values.progress || process.stderr.isTTY });
  console.log(values.json ? JSON.stringify(statistics, null, 2) : formatReport(statistics));
  return 0;
}
