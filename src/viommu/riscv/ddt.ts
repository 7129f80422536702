/**
 * The device-directory-table walk (specification 1.0 section 2.3, "Process to locate the
 * Device-context", steps 1-8): device_id split into DDI[0..2], non-leaf entries, then the device
 * context. Every read goes through `GuestMemory`, so a table outside guest RAM is cause 257.
 * @module
 */
import { CAUSE, DDTP_1LVL, bit, bits } from './constants';
import { checkDeviceContext, type DcConfig, type DeviceContext } from './device-context';
import type { GuestMemory } from './guest-memory';

/** The directory's shape: its mode (1LVL..3LVL), root and whether contexts are extended (MSI_FLAT). */
export interface DdtShape {
  mode: number;
  root: bigint;
  extended: boolean;
}

/** The levels of a DDT mode (2 → 1, 3 → 2, 4 → 3). */
export const ddtLevels = (mode: number): number => mode - DDTP_1LVL + 1;

/**
 * Whether `devid` is within the reach of the DDT mode (else cause 260 before any memory read).
 * The reference model's width check for extended contexts takes DDI[2] as 8 bits
 * (device_id[22:15]), so device_id bit 23 never makes a 1LVL or 2LVL extended request 260; the
 * vectors depend on it. The walk itself uses every bit.
 */
export function deviceIdFits(shape: DdtShape, devid: number): boolean {
  const leaf = shape.extended ? 6 : 7;
  const width = [leaf, leaf + 9, 24][ddtLevels(shape.mode) - 1]!;
  return (shape.extended ? devid & 0x7fffff : devid) < 2 ** width;
}

/**
 * Locates and checks the device context of `devid` (already known to fit the mode).
 * @returns the context, or cause 257 (load access fault), 258 (not valid) or 259 (misconfigured).
 */
export function walkDdt(mem: GuestMemory, shape: DdtShape, devid: number, cfg: DcConfig): DeviceContext | number {
  const leafBits = shape.extended ? 6 : 7;
  const levels = ddtLevels(shape.mode);
  let table = shape.root;
  for (let level = levels - 1; level > 0; level--) {
    const shift = leafBits + 9 * (level - 1);
    const index = BigInt((devid >>> shift) & (level === 2 ? (1 << (24 - shift)) - 1 : 0x1ff));
    const entry = mem.read64(table + index * 8n);
    if (entry === undefined) return CAUSE.ddtLoadAccess;
    if (!bit(entry, 0)) return CAUSE.ddtInvalid;
    if (bits(entry, 9, 1) !== 0n || bits(entry, 63, 54) !== 0n) return CAUSE.ddtMisconfigured;
    table = bits(entry, 53, 10) << 12n;
  }
  const size = shape.extended ? 64 : 32;
  const at = table + BigInt((devid & ((1 << leafBits) - 1)) * size);
  const words: bigint[] = [];
  for (let i = 0; i < size / 8; i++) {
    const w = mem.read64(at + BigInt(i * 8));
    if (w === undefined) return CAUSE.ddtLoadAccess;
    words.push(w);
  }
  if (!bit(words[0]!, 0)) return CAUSE.ddtInvalid;
  return checkDeviceContext(words, cfg);
}
