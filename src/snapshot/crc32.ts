/**
 * CRC-32 (IEEE 802.3: reflected, polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF), the
 * checksum of snapshots. It detects every error burst of up to 32 bits — so every flipped byte —
 * and any other corruption with probability 1 - 2^-32. Slicing-by-16 tables: sixteen bytes per
 * step (every restore checks the whole snapshot, so this is on the restore path).
 * @module
 */

const SLICES = 16;

/** TABLES[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLES = ((): Uint32Array => {
  const t = new Uint32Array(SLICES * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < SLICES; k++) t[k * 256 + n] = (t[t[(k - 1) * 256 + n]! & 0xff]! ^ (t[(k - 1) * 256 + n]! >>> 8)) >>> 0;
  }
  return t;
})();

/** The CRC-32 of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  const t = TABLES;
  let c = 0xffffffff;
  const n = bytes.length;
  const end16 = n - (n % 16);
  let i = 0;
  for (; i < end16; i += 16) {
    const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    c = t[15 * 256 + (a & 0xff)]! ^ t[14 * 256 + ((a >>> 8) & 0xff)]! ^ t[13 * 256 + ((a >>> 16) & 0xff)]! ^ t[12 * 256 + (a >>> 24)]!
      ^ t[11 * 256 + bytes[i + 4]!]! ^ t[10 * 256 + bytes[i + 5]!]! ^ t[9 * 256 + bytes[i + 6]!]! ^ t[8 * 256 + bytes[i + 7]!]!
      ^ t[7 * 256 + bytes[i + 8]!]! ^ t[6 * 256 + bytes[i + 9]!]! ^ t[5 * 256 + bytes[i + 10]!]! ^ t[4 * 256 + bytes[i + 11]!]!
      ^ t[3 * 256 + bytes[i + 12]!]! ^ t[2 * 256 + bytes[i + 13]!]! ^ t[256 + bytes[i + 14]!]! ^ t[bytes[i + 15]!]!;
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
