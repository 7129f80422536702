/**
 * The snapshot container: a fixed header, three sections and a checksum (little-endian).
 *
 * | offset       | bytes | field                                                   |
 * |--------------|-------|---------------------------------------------------------|
 * | 0            | 8     | magic `IOASIDSN`                                        |
 * | 8            | 4     | format version ({@link SNAPSHOT_FORMAT})                |
 * | 12           | 4     | ABI version of the core (`assembly/abi.ts`)             |
 * | 16           | 4     | ABI hash of the core (`expectedAbiHash()`)              |
 * | 20           | 4     | H: length of the header section                         |
 * | 24           | 4     | G: length of the graph section                          |
 * | 28           | 8     | I: length of the image section (u64)                    |
 * | 36           | 4     | reserved, 0                                             |
 * | 40           | H     | header: JSON (UTF-8) — engine options, layout, sizes    |
 * | 40+H         | G     | graph: JSON (UTF-8) — FDs, objects, devices, PASIDs     |
 * | 40+H+G       | I     | image: the engine memory (image.ts)                     |
 * | 40+H+G+I     | 4     | CRC-32 of every byte before it                          |
 *
 * Decoding checks, in order: the type, the magic, the format version, that the lengths add up to
 * the input's length (truncated or extended input), the checksum, then the ABI. Every refusal is
 * `IommuError('EINVAL', 'restore')`; nothing is parsed before the checksum has passed.
 * @module
 */
import * as abi from '../../assembly/abi';
import { expectedAbiHash } from '../core/core';
import { bad } from './json';
import { crc32 } from './crc32';

export const SNAPSHOT_MAGIC = 'IOASIDSN';
/** Version of this container and of the JSON and image formats inside it. */
export const SNAPSHOT_FORMAT = 1;
const FIXED = 40;
const TRAILER = 4;

/** The decoded sections. */
export interface Sections {
  header: unknown;
  graph: unknown;
  /** A view into the input. */
  image: Uint8Array;
}

/** Assembles a snapshot from its JSON sections and the image (as chunks, to avoid one more copy). */
export function encodeSnapshot(header: unknown, graph: unknown, image: readonly Uint8Array[]): Uint8Array {
  const enc = new TextEncoder();
  const h = enc.encode(JSON.stringify(header));
  const g = enc.encode(JSON.stringify(graph));
  const imageBytes = image.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(FIXED + h.length + g.length + imageBytes + TRAILER);
  const v = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) out[i] = SNAPSHOT_MAGIC.charCodeAt(i);
  v.setUint32(8, SNAPSHOT_FORMAT, true);
  v.setUint32(12, abi.ABI_VERSION, true);
  v.setUint32(16, expectedAbiHash(), true);
  v.setUint32(20, h.length, true);
  v.setUint32(24, g.length, true);
  v.setUint32(28, imageBytes % 2 ** 32, true);
  v.setUint32(32, Math.floor(imageBytes / 2 ** 32), true);
  out.set(h, FIXED);
  out.set(g, FIXED + h.length);
  let at = FIXED + h.length + g.length;
  for (const c of image) {
    out.set(c, at);
    at += c.length;
  }
  v.setUint32(at, crc32(out.subarray(0, at)), true);
  return out;
}

/** Splits and checks a snapshot. @throws EINVAL (see the module header for the order of checks). */
export function decodeSnapshot(bytes: unknown): Sections {
  if (!(bytes instanceof Uint8Array)) bad('expected the Uint8Array made by iommu.snapshot()');
  if (bytes.length < FIXED + TRAILER) bad(`not an ioasid snapshot: ${bytes.length} bytes is shorter than any snapshot`);
  for (let i = 0; i < 8; i++) if (bytes[i] !== SNAPSHOT_MAGIC.charCodeAt(i)) bad('not an ioasid snapshot (bad magic)');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = v.getUint32(8, true);
  if (format !== SNAPSHOT_FORMAT) bad(`snapshot format version ${format} is not supported (this engine reads version ${SNAPSHOT_FORMAT})`);
  const h = v.getUint32(20, true);
  const g = v.getUint32(24, true);
  const i = v.getUint32(28, true) + v.getUint32(32, true) * 2 ** 32;
  const expected = FIXED + h + g + i + TRAILER;
  if (expected !== bytes.length || v.getUint32(36, true) !== 0) {
    bad(expected > bytes.length ? `snapshot truncated: ${bytes.length} of ${expected} bytes` : `snapshot corrupt: section lengths give ${expected} bytes, got ${bytes.length}`);
  }
  const end = bytes.length - TRAILER;
  if (crc32(bytes.subarray(0, end)) !== v.getUint32(end, true)) bad('snapshot corrupt: checksum mismatch');
  const abiVersion = v.getUint32(12, true);
  const abiHash = v.getUint32(16, true);
  if (abiVersion !== abi.ABI_VERSION || abiHash !== expectedAbiHash()) {
    bad(`snapshot taken with core ABI ${abiVersion} (hash ${abiHash.toString(16)}), this engine has ABI ${abi.ABI_VERSION} (hash ${expectedAbiHash().toString(16)})`);
  }
  const text = (from: number, length: number, what: string): unknown => {
    try {
      // A copy: TextDecoder refuses views of a SharedArrayBuffer in browsers.
      return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.slice(from, from + length)));
    } catch {
      return bad(`${what} section is not JSON`);
    }
  };
  return {
    header: text(FIXED, h, 'header'),
    graph: text(FIXED + h, g, 'graph'),
    image: bytes.subarray(FIXED + h + g, end),
  };
}
