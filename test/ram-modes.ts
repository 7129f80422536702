/**
 * The three places guest RAM can be (README "Embedding in an emulator"), for suites that run in
 * every one with `describe.each(RAM_MODES)`:
 *
 * - `engine`: windows allocated in ioasid's own memory (`ram: { base, bytes }`);
 * - `memory`: ioasid inside a region of a shared WebAssembly.Memory the "emulator" owns, windows at
 *   offsets of that memory (`{ memory, region, ram: [{ base, offset, bytes }] }`);
 * - `external`: windows in SharedArrayBuffers (`ram: [{ base, buffer, offset, bytes }]`).
 *
 * `rams` are the caller's own views of its windows (made from the memory/buffer it holds, not
 * through ioasid), so tests read A/D and DMA writes back where the emulator would.
 * Window offsets are deliberately 8-byte but not page aligned, and the region does not start at 0.
 * Engines are made by helpers.ts `makeIommu` (its defaults under the options given, and the
 * ok and err helpers know them).
 */
import type { Iommu, IommuOptions } from '../src/index';
import { makeIommu } from './helpers';

export type RamMode = 'engine' | 'memory' | 'external';
export const RAM_MODES: readonly RamMode[] = ['engine', 'memory', 'external'];

export interface ModeWindow {
  base: bigint | number;
  bytes: number;
}

export interface InMode {
  iommu: Iommu;
  /** The caller's view of each window, in the order given. */
  rams: Uint8Array[];
  /** The emulator's memory (mode `memory`). */
  memory?: WebAssembly.Memory;
}

const PAGE = 4096;
const WASM_PAGE = 65536;
/** Where the engine's region starts in the emulator's memory (mode `memory`). */
export const REGION_OFFSET = 2 * WASM_PAGE;
/** Bytes of a window's buffer before the window (mode `external`) and slack between windows (mode `memory`). */
const SKEW = 8;

/**
 * Creates an engine with `windows` of guest RAM in `mode`; `opts` are the other create options
 * (`maxMemoryBytes` is dropped in mode `memory`, where the engine gets `regionBytes`).
 */
export function createInMode(mode: RamMode, windows: ModeWindow | ModeWindow[], opts: Omit<IommuOptions, 'ram' | 'memory' | 'region'> = {}, regionBytes = 2 * 2 ** 20): InMode {
  const list = Array.isArray(windows) ? windows : [windows];
  if (mode === 'engine') {
    const iommu = makeIommu({ ...opts, ram: Array.isArray(windows) ? list : list[0] });
    return { iommu, rams: list.map((w) => iommu.ramWindows().find((v) => v.base === BigInt(w.base))!.bytes) };
  }
  const { maxMemoryBytes: _max, ...rest } = opts;
  if (mode === 'external') {
    const ram = list.map((w) => ({ ...w, buffer: new SharedArrayBuffer(w.bytes + SKEW), offset: SKEW }));
    const iommu = makeIommu({ ...opts, ram });
    return { iommu, rams: ram.map((w) => new Uint8Array(w.buffer, SKEW, w.bytes)) };
  }
  let at = REGION_OFFSET + regionBytes;
  const offsets = list.map((w) => {
    const offset = at + SKEW;
    at = Math.ceil((offset + w.bytes) / PAGE) * PAGE;
    return offset;
  });
  const pages = Math.ceil(at / WASM_PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const iommu = makeIommu({
    ...rest, memory, region: { offset: REGION_OFFSET, bytes: regionBytes },
    ram: list.map((w, i) => ({ ...w, offset: offsets[i]! })),
  });
  return { iommu, memory, rams: list.map((w, i) => new Uint8Array(memory.buffer, offsets[i]!, w.bytes)) };
}
