/**
 * The memory image of a snapshot: the engine's part of the memory from its origin (0, or the start
 * of its region in an emulator's memory) to the page pool's top — the control block, device and
 * PASID tables, domain descriptors, translator slots, guest RAM the engine allocated and every
 * table page — in 4 KiB pages, all-zero pages left out; then, when guest RAM is saved, each RAM
 * window outside that range (in the emulator's memory or in a buffer), by base, the same way:
 *
 *   per part: u32 pageCount | bitmap of ceil(pageCount / 8) bytes (bit p = page p is stored, LSB
 *   first) | the stored pages, 4096 bytes each, in address order
 *
 * Left out (stored as zeros): every translator's IOTLB, the whole header of every worker slot
 * (epoch, counters, page-request ring), the fault-injection countdown, and guest RAM the engine
 * allocated when the snapshot leaves RAM out (`snapshot({ ram: false })`). A restored engine starts
 * with cold IOTLBs and no workers; the owner's slot keeps its counters. Pages wholly inside a
 * layout guard that still hold only the poison are not stored either: restore writes a fresh
 * control block and guards first (`writeControlBlock`), then the stored pages over them. Pages
 * above the pool's top were never handed out and start zeroed anyway.
 *
 * Capture runs on the owner between control calls while workers may translate: they write only
 * their own slots (dropped here), A/D bits of table entries and guest RAM (device DMA), so each
 * stored page holds, per 64-bit entry, a value it had during the capture.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { Core } from '../core/core';
import { controlBlockWords, GUARD_POISON, writeControlBlock, type Layout } from '../core/layout';
import type { GuestRam } from '../core/ram-window';
import { bad } from './json';

const PAGE = abi.PAGE_SIZE;
const WASM_PAGE = 65536;
/** Output chunk size while capturing (pages are appended; chunks are joined by the container). */
const CHUNK = 256 * PAGE;

interface Span {
  start: number;
  end: number;
}

/** Byte ranges of the engine's part stored as zeros, relative to its origin, sorted by start. */
function dropped(l: Layout): Span[] {
  const rel = (at: number): number => at - l.origin;
  const spans: Span[] = [{ start: rel(l.ctrl + abi.CTRL_FAIL_COUNTDOWN), end: rel(l.ctrl + abi.CTRL_FAIL_COUNTDOWN + 4) }];
  // Caches (IOTLB, call cache) restore empty; so do the slots of workers, which do not survive.
  for (let s = 0; s < l.slotCount; s++) {
    const base = rel(l.slots + s * l.slotSize);
    spans.push({ start: base + (s === 0 ? abi.SLOT_IOTLB : 0), end: base + l.slotBytes });
  }
  return spans;
}

/** True when the page at word `from` holds only `value`. */
function filledWith(words: Uint32Array, from: number, value: number): boolean {
  for (let i = from, end = from + PAGE / 4; i < end; i++) if (words[i] !== value) return false;
  return true;
}

/** Start addresses (relative to the origin) of the pages wholly inside a guard. */
function guardPages(l: Layout): Set<number> {
  const pages = new Set<number>();
  for (const g of l.guards) {
    const start = g.start - l.origin;
    for (let at = Math.ceil(start / PAGE) * PAGE; at + PAGE <= start + g.bytes; at += PAGE) pages.add(at);
  }
  return pages;
}

/** Appends one part: the pages of `u8` (a multiple of 4 KiB long), `spans` stored as zeros, poisoned `guards` left out. */
function captureSpan(chunks: Uint8Array[], u8: Uint8Array, spans: readonly Span[], guards: ReadonlySet<number>): void {
  const pageCount = u8.length / PAGE;
  const u32 = new Uint32Array(u8.buffer, u8.byteOffset, u8.length / 4);
  const head = new Uint8Array(4 + Math.ceil(pageCount / 8));
  new DataView(head.buffer).setUint32(0, pageCount, true);
  chunks.push(head);
  const scratch = new Uint8Array(PAGE);
  const scratchWords = new Uint32Array(scratch.buffer);
  let chunk = new Uint8Array(Math.min(CHUNK, u8.length));
  let used = 0;
  let d = 0;
  for (let p = 0; p < pageCount; p++) {
    const start = p * PAGE;
    const end = start + PAGE;
    while (d < spans.length && spans[d]!.end <= start) d++;
    let page = u8.subarray(start, end);
    if (d < spans.length && spans[d]!.start < end) {
      scratch.set(page);
      for (let k = d; k < spans.length && spans[k]!.start < end; k++) {
        scratch.fill(0, Math.max(spans[k]!.start, start) - start, Math.min(spans[k]!.end, end) - start);
      }
      if (filledWith(scratchWords, 0, 0)) continue;
      page = scratch;
    } else if (filledWith(u32, start / 4, 0) || (guards.has(start) && filledWith(u32, start / 4, GUARD_POISON))) {
      continue;
    }
    head[4 + (p >> 3)] = head[4 + (p >> 3)]! | (1 << (p & 7));
    if (used === chunk.length) {
      chunks.push(chunk);
      chunk = new Uint8Array(CHUNK);
      used = 0;
    }
    chunk.set(page, used);
    used += PAGE;
  }
  chunks.push(chunk.subarray(0, used));
}

/** Windows stored as parts of their own: the ones outside the engine's layout. */
function outerWindows(l: Layout, ram: GuestRam): number[] {
  return ram.windows.map((w, i) => i).filter((i) => ram.windows[i]!.buffer !== undefined || !l.ram.includes(ram.windows[i]!.offset));
}

/** The image section, as chunks: the engine's part of the memory, then (with `withRam`) the outer RAM windows. */
export function captureImage(core: Core, l: Layout, ram: GuestRam, withRam: boolean): Uint8Array[] {
  core.sync();
  const top = core.ctrl(abi.CTRL_POOL_TOP);
  const spans = dropped(l);
  if (!withRam) {
    for (const at of l.ram) {
      const w = ram.windows.find((x) => !x.buffer && x.offset === at)!;
      spans.push({ start: at - l.origin, end: at - l.origin + w.bytes });
    }
    spans.sort((a, b) => a.start - b.start);
  }
  const chunks: Uint8Array[] = [];
  captureSpan(chunks, core.u8.subarray(l.origin, l.origin + Math.ceil((top - l.origin) / PAGE) * PAGE), spans, guardPages(l));
  if (withRam) for (const i of outerWindows(l, ram)) captureSpan(chunks, ram.view(i), [], new Set());
  return chunks;
}

/** Reads one part at `at` of `image` into `into` (pageCount pages long); returns where the next part starts. @throws EINVAL. */
function loadSpan(image: Uint8Array, at: number, into: Uint8Array, what: string): number {
  const pageCount = into.length / PAGE;
  if (image.length < at + 4) bad(`image section truncated (${what})`);
  const count = new DataView(image.buffer, image.byteOffset + at, 4).getUint32(0, true);
  const bitmap = image.subarray(at + 4, at + 4 + Math.ceil(count / 8));
  let stored = 0;
  for (const byte of bitmap) for (let b = byte; b !== 0; b &= b - 1) stored++;
  const tailBits = count % 8 === 0 ? 0 : bitmap[bitmap.length - 1]! >> (count % 8);
  const end = at + 4 + bitmap.length + stored * PAGE;
  if (count !== pageCount || bitmap.length * 8 < count || tailBits !== 0 || image.length < end) {
    bad(`image section malformed (${what}: ${count} pages, ${stored} stored, ${image.length - at} bytes; expected ${pageCount} pages)`);
  }
  let from = at + 4 + bitmap.length;
  for (let p = 0; p < count; p++) {
    if (!(bitmap[p >> 3]! & (1 << (p & 7)))) continue;
    into.set(image.subarray(from, from + PAGE), p * PAGE);
    from += PAGE;
  }
  return end;
}

/**
 * Fills the engine's part of a memory: a fresh control block and guards for layout `l`, grown to
 * `memoryBytes` (a memory the engine owns; 0 for an emulator's), then the image over them; then the saved RAM windows.
 * @throws EINVAL the image is malformed, does not cover exactly `pageCount` pages or holds other windows.
 */
export function loadImage(memory: WebAssembly.Memory, l: Layout, ram: GuestRam, image: Uint8Array, pageCount: number, memoryBytes: number, withRam: boolean): void {
  // memoryBytes 0: an emulator's memory, which the engine never grows.
  if (l.origin + pageCount * PAGE > (memoryBytes === 0 ? l.poolLimit : memoryBytes)) bad('image section larger than the engine memory');
  writeControlBlock(memory, l, ram);
  const grow = memoryBytes / WASM_PAGE - memory.buffer.byteLength / WASM_PAGE;
  if (grow > 0) memory.grow(grow);
  let at = loadSpan(image, 0, new Uint8Array(memory.buffer, l.origin, pageCount * PAGE), 'engine');
  // What a capture leaves out is zero whatever the bytes say: a crafted image must not plant IOTLB
  // entries (they would translate without a walk) or worker slot state; nor may it write a guard.
  const u8 = new Uint8Array(memory.buffer);
  for (const s of dropped(l)) u8.fill(0, l.origin + s.start, l.origin + s.end);
  const words = new Uint32Array(memory.buffer);
  for (const g of l.guards) {
    for (let a = g.start; a < g.start + g.bytes; a += 4) if (words[a >>> 2] !== GUARD_POISON) bad(`image writes into the guard at 0x${g.start.toString(16)}`);
  }
  if (withRam) for (const i of outerWindows(l, ram)) at = loadSpan(image, at, ram.view(i), `RAM window ${i}`);
  if (at !== image.length) bad('image section malformed (trailing bytes)');
}

/**
 * Checks the loaded control block against the layout the options give: every word the layout
 * fixes, and a pool top of `poolTop` inside the pool. @throws EINVAL.
 */
export function checkControlBlock(memory: WebAssembly.Memory, l: Layout, poolTop: number): void {
  const v = new DataView(memory.buffer, l.ctrl, abi.CTRL_SIZE);
  for (const [offset, value] of controlBlockWords(l)) {
    if (offset === abi.CTRL_POOL_TOP || offset === abi.CTRL_EPOCH) continue;
    if (v.getUint32(offset, true) !== value) bad(`image does not match the layout of its options (control word +${offset})`);
  }
  const top = v.getUint32(abi.CTRL_POOL_TOP, true);
  if (top !== poolTop || top < l.poolBase || top > v.getUint32(abi.CTRL_POOL_LIMIT, true) || top > memory.buffer.byteLength) {
    bad('image pool top is inconsistent');
  }
}
