// `ioasid bench`: the benchmark suite, run exactly as `npm run bench` runs it after its build
// (`node bench/run.mjs [args]`, which bundles bench/*.ts with esbuild and runs it). The suite lives
// in the repository, not in the published package, and needs its dev dependencies.
import { runNodeScript } from './common.mjs';

export const summary = 'run the benchmark suite (a repository checkout, after npm run build)';
export const usage = 'ioasid bench [--json FILE] [--quick] [--scale | --no-scale] [--only GROUPS]';
export const help = `usage: ${usage}

Runs the benchmark suite (bench/) the way \`npm run bench\` does after building:
\`node bench/run.mjs [options]\`, options passed through unchanged. Needs a checkout of the
repository with its dev dependencies installed and built (npm ci && npm run build); the suite is
not part of the published package. See bench/README.md for what is measured.

Options (passed to the suite, which checks them):
  --json FILE     also write the results as JSON to FILE
  --quick         short tasks (a smoke run)
  --scale         only the scale and memory script (1 GiB of 4 KiB maps, 10^5 PASIDs); --no-scale: everything but it
  --only GROUPS   comma-separated groups, e.g. hit,walk,pasid,map,workers
  -h, --help      this text

Exit status: the suite's (non-zero when a cross-check fails or an argument is wrong).`;

export async function run(argv) {
  // Not checked here: the suite owns its options (and rejects unknown ones itself).
  return runNodeScript('bench/run.mjs', argv,
    'ioasid bench needs a repository checkout (bench/ is not in the published package): npm ci && npm run build');
}
