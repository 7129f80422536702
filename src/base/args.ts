/**
 * Validation of public-call arguments: every control call runs its inputs through these before
 * touching any state, so a bad argument fails with an errno and changes nothing.
 *
 * Numbers: a `bigint` or a safe-integer `number`. Wrong type, NaN, ±Infinity, fractions and
 * negatives are EINVAL; integers ≥ 2^64 are EOVERFLOW (the value cannot be an address).
 * @module
 */
import { fail } from './errno';
import { bigintOf } from './u64-word';

export { U64_MAX } from './range';
const TWO_64 = 1n << 64n;

/**
 * `value` as a u64 bigint. @throws EINVAL not a bigint or safe integer (NaN, ±Infinity, fraction,
 * unsafe integer below 2^64, other type) or negative; EOVERFLOW ≥ 2^64 (bigint or integral number).
 */
export function u64(op: string, name: string, value: unknown): bigint {
  // The common number case: a safe integer ≥ 0 is a u64, converted with no runtime call.
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return bigintOf(value);
  let v: bigint;
  if (typeof value === 'bigint') v = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
  // An integral number ≥ 2^64 is out of range whatever its precision: EOVERFLOW, as for a bigint.
  else if (typeof value === 'number' && Number.isInteger(value) && value >= 2 ** 64) return fail('EOVERFLOW', op, `${name}: expected < 2^64, got ${value}`);
  else return fail('EINVAL', op, `${name}: expected a bigint or safe integer, got ${describe(value)}`);
  if (v < 0n) return fail('EINVAL', op, `${name}: expected ≥ 0, got ${v}`);
  if (v >= TWO_64) return fail('EOVERFLOW', op, `${name}: expected < 2^64, got ${v}`);
  return v;
}

/** An integer in [min, max] (IDs, PASIDs, counts). @throws EINVAL otherwise. */
export function int(op: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
  if (typeof value === 'bigint' && value >= BigInt(min) && value <= BigInt(max)) return Number(value);
  return fail('EINVAL', op, `${name}: expected an integer in [${min}, ${max}], got ${describe(value)}`);
}

/** An object ID: any integer is accepted and a non-existent one is ENOENT at lookup, as in iommufd. */
export function id(op: string, name: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  return fail('EINVAL', op, `${name}: expected an integer object ID, got ${describe(value)}`);
}

/** An optional boolean flag. @throws EINVAL for anything but undefined/true/false. */
export function flag(op: string, name: string, value: unknown, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  if (typeof value === 'boolean') return value;
  return fail('EINVAL', op, `${name}: expected a boolean, got ${describe(value)}`);
}

const isOwnEnumerable = Object.prototype.propertyIsEnumerable;

/** An options object (or undefined → {}). Unknown keys are EOPNOTSUPP, like unknown ioctl flags. */
export function options<K extends string>(op: string, value: unknown, known: readonly K[]): Partial<Record<K, unknown>> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('EINVAL', op, `expected an options object, got ${describe(value)}`);
  }
  const key = unknownKey(value, known);
  if (key !== undefined) fail('EOPNOTSUPP', op, `unknown option '${key}' (known: ${known.join(', ')})`);
  return value as Partial<Record<K, unknown>>;
}

/**
 * The first key of `value` that is not in `known`, or undefined. Keys as Object.keys has them
 * (own, enumerable, strings) and in its order: for-in lists them first, then inherited ones,
 * which are skipped. No array allocated per call, as Object.keys would.
 */
export function unknownKey(value: object, known: readonly string[]): string | undefined {
  for (const key in value) if (!isKnown(known, key) && isOwnEnumerable.call(value, key)) return key;
  return undefined;
}

/** `known.includes(key)`, as a loop the compiler inlines (a per-key builtin call costs more on the MAP path). */
function isKnown(known: readonly string[], key: string): boolean {
  for (let i = 0; i < known.length; i++) if (known[i] === key) return true;
  return false;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return `string '${value.length > 20 ? value.slice(0, 20) + '…' : value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object') return value === null ? 'null' : Array.isArray(value) ? 'array' : 'object';
  return `${typeof value} ${String(value)}`;
}
