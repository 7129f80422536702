/**
 * Sorting without a comparator call per step: V8's `Array.prototype.sort` calls a JS comparator
 * ~2000 times for 256 elements (about 200 ns per element measured on Node 20 with BigInt keys);
 * a merge sort over typed arrays of double keys does the same work inline.
 * @module
 */

/**
 * Indices `0..keys.length-1` in ascending order of `keys`; `tie(a, b)` (a negative, zero or
 * positive number, as a comparator) orders indices whose keys are equal. Stable.
 */
export function orderByKeys(keys: Float64Array, tie: (a: number, b: number) => number): Int32Array {
  const n = keys.length;
  let src = new Int32Array(n);
  let dst = new Int32Array(n);
  for (let i = 0; i < n; i++) src[i] = i;
  for (let width = 1; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      let a = lo;
      let b = mid;
      for (let out = lo; out < hi; out++) {
        const ia = src[a]!;
        const ib = src[b]!;
        const takeA = b >= hi || (a < mid && (keys[ia]! < keys[ib]! || (keys[ia] === keys[ib] && tie(ia, ib) <= 0)));
        dst[out] = takeA ? ia : ib;
        if (takeA) a++;
        else b++;
      }
    }
    [src, dst] = [dst, src];
  }
  return src;
}
