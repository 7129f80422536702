/**
 * The memory image of a snapshot: the engine memory from address 0 to the page pool's top — the
 * control block, device and PASID tables, domain descriptors, translator slots, guest RAM and every
 * table page — in 4 KiB pages, all-zero pages left out:
 *
 *   u32 pageCount | bitmap of ceil(pageCount / 8) bytes (bit p = page p is stored, LSB first)
 *   | the stored pages, 4096 bytes each, in address order
 *
 * Left out (stored as zeros): every translator's IOTLB, the whole header of every worker slot
 * (epoch, counters, page-request ring) and the fault-injection countdown. A restored engine starts
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
import { bad } from './json';

const PAGE = abi.PAGE_SIZE;
const WASM_PAGE = 65536;
/** Output chunk size while capturing (pages are appended; chunks are joined by the container). */
const CHUNK = 256 * PAGE;

interface Span {
  start: number;
  end: number;
}

/** Byte ranges stored as zeros, sorted by start. */
function dropped(l: Layout): Span[] {
  const spans: Span[] = [{ start: abi.CTRL_BASE + abi.CTRL_FAIL_COUNTDOWN, end: abi.CTRL_BASE + abi.CTRL_FAIL_COUNTDOWN + 4 }];
  const iotlbEnd = abi.SLOT_IOTLB + l.iotlbSets * abi.TLB_SET_SIZE;
  for (let s = 0; s < l.slotCount; s++) {
    const base = l.slots + s * l.slotSize;
    spans.push({ start: base + (s === 0 ? abi.SLOT_IOTLB : 0), end: base + iotlbEnd });
  }
  return spans;
}

/** True when the page at word `from` holds only `value`. */
function filledWith(words: Uint32Array, from: number, value: number): boolean {
  for (let i = from, end = from + PAGE / 4; i < end; i++) if (words[i] !== value) return false;
  return true;
}

/** Start addresses of the pages wholly inside a guard. */
function guardPages(l: Layout): Set<number> {
  const pages = new Set<number>();
  for (const g of l.guards) {
    for (let at = Math.ceil(g.start / PAGE) * PAGE; at + PAGE <= g.start + g.bytes; at += PAGE) pages.add(at);
  }
  return pages;
}

/** Pages [0, pool top) of the engine memory: the image section, as chunks. */
export function captureImage(core: Core, l: Layout): Uint8Array[] {
  core.sync();
  const pageCount = Math.ceil(core.ctrl(abi.CTRL_POOL_TOP) / PAGE);
  const head = new Uint8Array(4 + Math.ceil(pageCount / 8));
  new DataView(head.buffer).setUint32(0, pageCount, true);
  const chunks = [head];
  const u8 = core.u8;
  const u32 = core.u32;
  const scratch = new Uint8Array(PAGE);
  const scratchWords = new Uint32Array(scratch.buffer);
  const spans = dropped(l);
  const guards = guardPages(l);
  let chunk = new Uint8Array(CHUNK);
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
    if (used === CHUNK) {
      chunks.push(chunk);
      chunk = new Uint8Array(CHUNK);
      used = 0;
    }
    chunk.set(page, used);
    used += PAGE;
  }
  chunks.push(chunk.subarray(0, used));
  return chunks;
}

/**
 * Fills a new engine memory: a fresh control block and guards for layout `l`, grown to
 * `memoryBytes`, then the image over them.
 * @throws EINVAL the image is malformed or does not cover exactly `pageCount` pages.
 */
export function loadImage(memory: WebAssembly.Memory, l: Layout, ramBase: bigint, image: Uint8Array, pageCount: number, memoryBytes: number): void {
  if (image.length < 4) bad('image section truncated');
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const count = v.getUint32(0, true);
  const bitmap = image.subarray(4, 4 + Math.ceil(count / 8));
  let stored = 0;
  for (const byte of bitmap) for (let b = byte; b !== 0; b &= b - 1) stored++;
  const tailBits = count % 8 === 0 ? 0 : bitmap[bitmap.length - 1]! >> (count % 8);
  if (count !== pageCount || bitmap.length * 8 < count || tailBits !== 0 || image.length !== 4 + bitmap.length + stored * PAGE) {
    bad(`image section malformed (${count} pages, ${stored} stored, ${image.length} bytes; expected ${pageCount} pages)`);
  }
  if (count * PAGE > memoryBytes) bad('image section larger than the engine memory');
  writeControlBlock(memory, l, ramBase);
  const grow = memoryBytes / WASM_PAGE - memory.buffer.byteLength / WASM_PAGE;
  if (grow > 0) memory.grow(grow);
  const u8 = new Uint8Array(memory.buffer);
  let at = 4 + bitmap.length;
  for (let p = 0; p < count; p++) {
    if (!(bitmap[p >> 3]! & (1 << (p & 7)))) continue;
    u8.set(image.subarray(at, at + PAGE), p * PAGE);
    at += PAGE;
  }
}

/**
 * Checks the loaded control block against the layout the options give: every word the layout
 * fixes, and a pool top of `poolTop` inside the pool. @throws EINVAL.
 */
export function checkControlBlock(memory: WebAssembly.Memory, l: Layout, ramBase: bigint, poolTop: number): void {
  const v = new DataView(memory.buffer, abi.CTRL_BASE, abi.CTRL_SIZE);
  for (const [offset, value] of controlBlockWords(l, ramBase)) {
    if (offset === abi.CTRL_POOL_TOP || offset === abi.CTRL_EPOCH) continue;
    if (v.getUint32(offset, true) !== value) bad(`image does not match the layout of its options (control word +${offset})`);
  }
  const top = v.getUint32(abi.CTRL_POOL_TOP, true);
  if (top !== poolTop || top < l.poolBase || top > v.getUint32(abi.CTRL_POOL_LIMIT, true) || top > memory.buffer.byteLength) {
    bad('image pool top is inconsistent');
  }
}
