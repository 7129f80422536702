/**
 * Validation of the guest-RAM options of `Iommu.create`: `ram` (one window or a list of them),
 * `memory` and `region` (the engine inside a memory an emulator owns). Windows are resolved to
 * `RamWindowSpec`s once the layout has placed the ones the engine allocates itself.
 *
 * Rules: at most RAM_WINDOWS_MAX windows; guest-physical bases and sizes are multiples of 4 KiB
 * and windows are disjoint (so a table entry never straddles two); a window's offset in a memory
 * or buffer is a multiple of 8 (aligned atomic u64 access) and the window lies inside it; a window
 * in the emulator's memory does not overlap the engine's region.
 * @module
 */
import * as abi from '../../assembly/abi';
import { describe, int, options } from '../base/args';
import { fail } from '../base/errno';
import type { RamWindowSpec } from './ram-window';

/** One guest RAM window of `IommuOptions.ram`. */
export interface RamWindowOptions {
  /** Guest-physical address of the window's first byte (4 KiB aligned). */
  base: bigint | number;
  /** Size in bytes (a multiple of 4 KiB, at most 2 GiB). */
  bytes: number;
  /**
   * Byte offset of the window in `buffer`, or in the emulator's `memory` (`IommuOptions.memory`);
   * a multiple of 8. Without `buffer` and `memory` the engine allocates the window in its own memory.
   */
  offset?: number;
  /** A buffer the engine does not own holding the window (a JS emulator's RAM). */
  buffer?: ArrayBuffer | SharedArrayBuffer;
}

/** A window before the layout: `offset` undefined = the engine allocates it. */
export interface RamRequest {
  base: bigint;
  bytes: number;
  offset?: number;
  buffer?: ArrayBuffer | SharedArrayBuffer;
}

/** The resolved RAM and memory options. */
export interface RamConfig {
  /** The emulator's memory, or undefined when the engine creates its own. */
  memory?: WebAssembly.Memory;
  region: { offset: number; bytes: number };
  windows: RamRequest[];
}

const WINDOW_KEYS = ['base', 'bytes', 'offset', 'buffer'] as const;
const PAGE = abi.PAGE_SIZE;

function isBuffer(v: unknown): v is ArrayBuffer | SharedArrayBuffer {
  return v instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer);
}

/** Parses `memory`, `region` and `ram`. @throws EINVAL. */
export function resolveRam(op: string, memory: unknown, region: unknown, ram: unknown): RamConfig {
  let mem: WebAssembly.Memory | undefined;
  let reg = { offset: 0, bytes: 0 };
  if (memory !== undefined || region !== undefined) {
    if (!(memory instanceof WebAssembly.Memory)) fail('EINVAL', op, `memory: expected a WebAssembly.Memory, got ${describe(memory)}`);
    if (region === undefined) fail('EINVAL', op, 'region: expected { offset, bytes }, the part of memory the engine may use');
    mem = memory;
    const r = options(op, region, ['offset', 'bytes'] as const);
    const size = mem.buffer.byteLength;
    reg = { offset: int(op, 'region.offset', r.offset, 0, 2 ** 32), bytes: int(op, 'region.bytes', r.bytes, PAGE, 2 ** 32) };
    if (reg.offset % PAGE || reg.bytes % PAGE) fail('EINVAL', op, `region: expected offset and bytes multiples of ${PAGE}`);
    if (reg.offset + reg.bytes > size) fail('EINVAL', op, `region: ends at ${reg.offset + reg.bytes}, past the memory's ${size} bytes`);
    // The engine's pointers are u32: its last page may not reach 4 GiB.
    if (reg.offset + reg.bytes > 2 ** 32 - PAGE) fail('EINVAL', op, 'region: expected to end below 4 GiB - 4 KiB');
  }
  const list = ram === undefined ? [] : Array.isArray(ram) ? ram : [ram];
  if (list.length > abi.RAM_WINDOWS_MAX) fail('EINVAL', op, `ram: at most ${abi.RAM_WINDOWS_MAX} windows, got ${list.length}`);
  const windows = list.map((w: unknown, i) => window(op, Array.isArray(ram) ? `ram[${i}]` : 'ram', w, mem, reg));
  const sorted = [...windows].sort((a, b) => (a.base < b.base ? -1 : 1));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.base + BigInt(prev.bytes) > sorted[i]!.base) {
      fail('EINVAL', op, `ram: windows at 0x${prev.base.toString(16)} and 0x${sorted[i]!.base.toString(16)} overlap`);
    }
  }
  return { memory: mem, region: reg, windows };
}

function window(op: string, name: string, value: unknown, memory: WebAssembly.Memory | undefined, region: { offset: number; bytes: number }): RamRequest {
  const w = options(op, value, WINDOW_KEYS);
  const bytes = int(op, `${name}.bytes`, w.bytes, PAGE, 2 ** 31);
  if (bytes % PAGE) fail('EINVAL', op, `${name}.bytes: expected a multiple of ${PAGE}, got ${bytes}`);
  if (typeof w.base !== 'bigint' && !Number.isSafeInteger(w.base)) fail('EINVAL', op, `${name}.base: expected an integer, got ${describe(w.base)}`);
  const base = BigInt(w.base as number | bigint);
  if (base < 0n || base % BigInt(PAGE) !== 0n) fail('EINVAL', op, `${name}.base: expected a page-aligned address`);
  // Page tables may sit anywhere below 2^64 (RISC-V: 56-bit physical addresses); software DMA
  // (number addresses) reaches a window only when it ends below 2^53 (ram-window.ts).
  if (base + BigInt(bytes) > 1n << 64n) fail('EINVAL', op, `${name}: expected the window to end below 2^64`);
  if (w.buffer !== undefined && !isBuffer(w.buffer)) fail('EINVAL', op, `${name}.buffer: expected an ArrayBuffer or SharedArrayBuffer, got ${describe(w.buffer)}`);
  const holder = w.buffer ?? memory?.buffer;
  if (w.offset === undefined && w.buffer === undefined) {
    if (memory !== undefined) fail('EINVAL', op, `${name}.offset: expected the window's offset in memory`);
    return { base, bytes };
  }
  if (holder === undefined) fail('EINVAL', op, `${name}.offset: only for a window in buffer or in memory`);
  const offset = w.offset === undefined ? 0 : int(op, `${name}.offset`, w.offset, 0, 2 ** 32);
  if (offset % 8) fail('EINVAL', op, `${name}.offset: expected a multiple of 8, got ${offset}`);
  if (offset + bytes > holder.byteLength) fail('EINVAL', op, `${name}: ends at ${offset + bytes}, past the ${holder.byteLength} bytes of its ${w.buffer ? 'buffer' : 'memory'}`);
  if (!w.buffer && offset < region.offset + region.bytes && region.offset < offset + bytes) fail('EINVAL', op, `${name}: overlaps the engine's region`);
  return { base, bytes, offset, ...(w.buffer ? { buffer: w.buffer as ArrayBuffer | SharedArrayBuffer } : {}) };
}

/** The windows with the offsets the layout gave the ones the engine allocates (`allocated`, in order). */
export function placeWindows(windows: readonly RamRequest[], allocated: readonly number[]): RamWindowSpec[] {
  let next = 0;
  return windows.map((w) => (w.offset === undefined ? { base: w.base, bytes: w.bytes, offset: allocated[next++]! } : (w as RamWindowSpec)));
}
