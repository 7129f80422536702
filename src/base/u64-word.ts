/**
 * One u64 word seen as a bigint and as two u32 halves: moves a u64 between bigint and number with
 * no BigInt arithmetic and no runtime call. In V8 (Node 24) `Number(x)` and `BigInt(n)` each cost
 * a call into the runtime (tens of ns: bench/README.md); a store into a BigUint64Array and a read
 * of its halves, or the reverse, is a few inline instructions.
 *
 * Invariants: `word` and `halves` alias one 8-byte buffer that only the functions below touch,
 * each in one straight run (nothing between its store and its load can re-enter).
 * @module
 */

const word = new BigUint64Array(1);
const halves = new Uint32Array(word.buffer);
/** Index of the high u32 half of a u64 in a Uint32Array over u64 words: 1 on little-endian platforms. */
export const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
/** Index of the low u32 half (see {@link HI}). */
export const LO = 1 - HI;

/** The value of u64 `x` rounded to the nearest double (exact below 2^53): a monotonic search key. */
export function keyOf(x: bigint): number {
  word[0] = x;
  return halves[HI]! * 4294967296 + halves[LO]!;
}

/** {@link keyOf} of the u64 at u32 index `at` of `words` (a Uint32Array over u64 words), with no BigInt read. */
export function keyOfHalves(words: Uint32Array, at: number): number {
  return words[at + HI]! * 4294967296 + words[at + LO]!;
}

/** `BigInt(n)` for a safe integer `n` ≥ 0 (below 2^53, so both halves are exact). */
export function bigintOf(n: number): bigint {
  halves[LO] = n >>> 0; // ToUint32 is n modulo 2^32
  halves[HI] = (n / 4294967296) >>> 0;
  return word[0]!;
}
