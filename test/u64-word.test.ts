import { describe, expect, it } from 'vitest';
import { bigintOf, keyOf, keyOfHalves, HI, LO } from '../src/base/u64-word.js';
import { u64 } from '../src/base/args.js';
import { IommuError } from '../src/index.js';

/** Safe integers ≥ 0 around every u32 boundary, and a spread of others. */
const values = [0, 1, 4095, 4096, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, 2 ** 52, 2 ** 53 - 1];
for (let i = 0, x = 12345; i < 200; i++) {
  x = (Math.imul(x, 1103515245) + 12345) >>> 0; // a fixed sequence: the same values every run
  values.push(x * 2 ** 21 + (i % 2 ** 21));
}

describe('u64-word', () => {
  it('bigintOf converts every safe integer ≥ 0 exactly, as BigInt does', () => {
    for (const n of values) expect(bigintOf(n)).toBe(BigInt(n));
  });

  it('keyOf and keyOfHalves read a u64 back as the nearest double', () => {
    for (const n of values) expect(keyOf(BigInt(n))).toBe(n);
    const big = [2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
    for (const x of big) expect(keyOf(x)).toBe(Number(x));
    const words = new BigUint64Array([5n, 2n ** 40n + 7n]);
    const halves = new Uint32Array(words.buffer);
    expect(keyOfHalves(halves, 2)).toBe(2 ** 40 + 7);
    expect(halves[2 + HI]).toBe(2 ** 8);
    expect(halves[2 + LO]).toBe(7);
  });

  it('u64 takes number arguments through bigintOf with the same results and errors', () => {
    for (const n of values) expect(u64('op', 'x', n)).toBe(BigInt(n));
    const errno = (v: unknown): string => {
      try {
        u64('op', 'x', v);
      } catch (e) {
        return (e as IommuError).errno;
      }
      return 'none';
    };
    expect(errno(-1)).toBe('EINVAL');
    expect(errno(-0)).toBe('none');
    expect(u64('op', 'x', -0)).toBe(0n);
    expect(errno(1.5)).toBe('EINVAL');
    expect(errno(2 ** 53)).toBe('EINVAL');
    expect(errno(2 ** 64)).toBe('EOVERFLOW');
    expect(errno(Number.NaN)).toBe('EINVAL');
  });
});
