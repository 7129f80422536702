/**
 * Argument checks of RiscvIommu's public calls: wrong types and ranges are the caller's error
 * (IommuError EINVAL, nothing changed); every well-typed access, however odd for the device (a
 * misaligned offset, a 2-byte size), is the guest's business and handled as hardware would.
 * @module
 */
import { IommuError } from '../../api';

const isInt = (v: unknown, lo: number, hi: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;

/** MMIO: an integer offset in the 4 KiB page, an integer size 1..8, a 64-bit value. */
export function checkMmio(op: string, offset: unknown, size: unknown, value: unknown): void {
  if (!isInt(offset, 0, 4095)) throw new IommuError('EINVAL', op, `offset: expected an integer in 0..4095, got ${String(offset)}`);
  if (!isInt(size, 1, 8)) throw new IommuError('EINVAL', op, `size: expected an integer in 1..8, got ${String(size)}`);
  const ok = typeof value === 'bigint' ? value >= 0n && value < 1n << 64n : isInt(value, 0, Number.MAX_SAFE_INTEGER);
  if (!ok) throw new IommuError('EINVAL', op, `value: expected an integer in 0..2^64-1, got ${String(value)}`);
}

/** A request: 24-bit device_id, 20-bit process_id or undefined, 64-bit IOVA, Access bits. */
export function checkRequest(op: string, devid: unknown, pid: unknown, iova: unknown, access: unknown): void {
  if (!isInt(devid, 0, 0xffffff)) throw new IommuError('EINVAL', op, `devid: expected a 24-bit device_id, got ${String(devid)}`);
  if (pid !== undefined && !isInt(pid, 0, 0xfffff)) throw new IommuError('EINVAL', op, `pid: expected a 20-bit process_id or undefined, got ${String(pid)}`);
  const ok = typeof iova === 'bigint' ? iova >= 0n && iova < 1n << 64n : isInt(iova, 0, Number.MAX_SAFE_INTEGER);
  if (!ok) throw new IommuError('EINVAL', op, `iova: expected an integer in 0..2^64-1, got ${String(iova)}`);
  if (!isInt(access, 0, 15)) throw new IommuError('EINVAL', op, `access: expected Access bits (Read|Write|Exec|Priv), got ${String(access)}`);
}
