/**
 * Typed reading of the JSON sections of a snapshot. Everything read from a snapshot goes through
 * these: a value of the wrong shape is `IommuError('EINVAL', 'restore')` naming its path, so a
 * foreign input can never reach the engine as a half-checked value. Big integers travel as hex
 * strings ("0x…"), since JSON numbers stop at 2^53.
 * @module
 */
import { IommuError } from '../base/errno';

/** The op name of every error restore reports. */
export const OP = 'restore';

/** Throws the EINVAL of an unusable snapshot. */
export function bad(detail: string): never {
  throw new IommuError('EINVAL', OP, detail);
}

/** A u64 as JSON: lower-case hex with a 0x prefix. */
export const hex = (v: bigint): string => `0x${v.toString(16)}`;

const HEX = /^0x[0-9a-f]{1,16}$/;

export function obj(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${path}: expected an object`);
  return v as Record<string, unknown>;
}

export function arr(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) bad(`${path}: expected an array`);
  return v;
}

/** An integer in [min, max]. */
export function uint(v: unknown, path: string, max = 2 ** 32 - 1, min = 0): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(`${path}: expected an integer in [${min}, ${max}]`);
  return v;
}

export function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') bad(`${path}: expected a boolean`);
  return v;
}

export function str(v: unknown, path: string): string {
  if (typeof v !== 'string') bad(`${path}: expected a string`);
  return v;
}

/** A u64 written by {@link hex}. */
export function u64(v: unknown, path: string): bigint {
  if (typeof v !== 'string' || !HEX.test(v)) bad(`${path}: expected a hex u64 string`);
  return BigInt(v);
}

/** An inclusive range written as `[start, last]`. */
export function range(v: unknown, path: string): { start: bigint; last: bigint } {
  const a = arr(v, path);
  if (a.length !== 2) bad(`${path}: expected [start, last]`);
  const start = u64(a[0], `${path}[0]`);
  const last = u64(a[1], `${path}[1]`);
  if (last < start) bad(`${path}: expected start ≤ last`);
  return { start, last };
}

/** `list` mapped with `each(item, path)`. */
export function list<T>(v: unknown, path: string, each: (item: unknown, path: string) => T): T[] {
  return arr(v, path).map((item, i) => each(item, `${path}[${i}]`));
}
