/**
 * Per-FD quotas (`iommu.open({ limits })`): how many PASIDs, domains (HWPTs of any kind, auto ones
 * included) and page-table pages (of its engine-managed HWPTs) one ioasid FD may hold at once, so
 * that one VM's FD cannot exhaust what the engine shares among all of them. Reaching a limit fails
 * that FD's call alone, as the shared resource running out would: ENOSPC for PASIDs and domains,
 * ENOMEM for pages, with nothing changed.
 * @module
 */
import { int, options } from '../base/args';
import { fail } from '../base/errno';

/** Limits of one FD; an omitted one is unlimited (only the engine's own size bounds it). */
export interface FdLimits {
  /** PASIDs the FD may own at once. */
  pasids?: number;
  /** HWPTs (engine-managed, auto, user-managed, nested) the FD may hold at once. */
  domains?: number;
  /** Page-table pages (4 KiB, roots included) the FD's engine-managed HWPTs may use together. */
  pages?: number;
}

/** Limits with every field set (`Infinity` = unlimited). */
export type ResolvedLimits = Readonly<Required<FdLimits>>;

export const NO_LIMITS: ResolvedLimits = Object.freeze({ pasids: Infinity, domains: Infinity, pages: Infinity });

const LIMIT_KEYS = ['pasids', 'domains', 'pages'] as const;
/** Largest accepted limit: more than any engine can hold of each (2^31 - 1). */
const MAX_LIMIT = 2 ** 31 - 1;

/** Checks a `limits` option. @throws EINVAL not an object or a field not an integer in [0, 2^31-1]; EOPNOTSUPP unknown field. */
export function parseLimits(op: string, value: unknown): ResolvedLimits {
  if (value === undefined) return NO_LIMITS;
  const o = options(op, value, LIMIT_KEYS);
  const one = (k: (typeof LIMIT_KEYS)[number]): number => (o[k] === undefined ? Infinity : int(op, `limits.${k}`, o[k], 0, MAX_LIMIT));
  return Object.freeze({ pasids: one('pasids'), domains: one('domains'), pages: one('pages') });
}

/** The finite limits as plain data (snapshots: JSON has no Infinity). */
export function limitsJson(l: ResolvedLimits): FdLimits {
  const out: FdLimits = {};
  for (const k of LIMIT_KEYS) if (Number.isFinite(l[k])) out[k] = l[k];
  return out;
}

/** @throws ENOSPC when `held` PASIDs already reach the limit. */
export function checkPasidLimit(op: string, l: ResolvedLimits, held: number): void {
  if (held >= l.pasids) fail('ENOSPC', op, `this FD already owns ${held} PASIDs, its limit (limits.pasids)`);
}

/** @throws ENOSPC when the `held()` HWPTs already reach the limit. */
export function checkDomainLimit(op: string, l: ResolvedLimits, held: () => number): void {
  // Counted only under a limit: the count visits every object of the FD.
  if (Number.isFinite(l.domains) && held() >= l.domains) fail('ENOSPC', op, `this FD already holds ${held()} HWPTs, its limit (limits.domains)`);
}

/** True when `used` table pages exceed the limit (the caller undoes what it allocated, then fails ENOMEM). */
export function overPageLimit(l: ResolvedLimits, used: () => number): boolean {
  return Number.isFinite(l.pages) && used() > l.pages;
}
