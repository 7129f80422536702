/**
 * Little-endian field access on the byte arrays of a descriptor chain, without allocating (no
 * DataView per request, no BigInt): 64-bit fields are read as two u32 halves.
 * @module
 */

export function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export function writeU16(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
}

export function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

export function writeU64(b: Uint8Array, at: number, v: bigint): void {
  writeU32(b, at, Number(v & 0xffffffffn));
  writeU32(b, at + 4, Number((v >> 32n) & 0xffffffffn));
}

/** True when `b[at, at + n)` are all zero. */
export function allZero(b: Uint8Array, at: number, n: number): boolean {
  for (let i = at; i < at + n; i++) if (b[i] !== 0) return false;
  return true;
}
