/**
 * Error values of the control API: the one place errno names and Linux numbers are defined.
 *
 * Every failed control call throws an {@link IommuError} and changes nothing. Meanings follow
 * iommufd's uAPI header: EOPNOTSUPP a known field with an unsupported value, EINVAL understood
 * but wrong, ENOENT an ID or IOVA that does not exist, EOVERFLOW address arithmetic overflow.
 * @module
 */

/** Linux errno numbers for every name the engine can report. */
export const ERRNO = {
  /** Operation not permitted: a PASID the bound FD does not own; a writable copy of a read-only mapping. */
  EPERM: 1,
  /** No such object ID in this FD (or of the wrong type), or nothing mapped where the call needs it. */
  ENOENT: 2,
  /** I/O error. */
  EIO: 5,
  /** A call on a closed FD. */
  EBADF: 9,
  /** Out of memory: page pool, domain slots or IDs exhausted. */
  ENOMEM: 12,
  /** Bad address: an access object's read or write of a mapping that is not guest RAM. */
  EFAULT: 14,
  /** The object is still in use (referenced, attached or bound). */
  EBUSY: 16,
  /** Already exists: an overlapping fixed-IOVA map, a PASID or RID already taken. */
  EEXIST: 17,
  /** No such device. */
  ENODEV: 19,
  /** Invalid argument: understood but wrong (zero length, misalignment, wrong object kind, bad type). */
  EINVAL: 22,
  /** No space: no free IOVA range, PASID or translator slot. */
  ENOSPC: 28,
  /** Illegal seek. */
  ESPIPE: 29,
  /** Out of range: an output address beyond what engine tables hold. */
  ERANGE: 34,
  /** Pinned pages an access object did not unpin when asked to. */
  EDEADLOCK: 35,
  /** Message too long. */
  EMSGSIZE: 90,
  /** Not supported: an unknown option or format, a feature the object or device lacks. */
  EOPNOTSUPP: 95,
  /** Address in use: an allowed range meets a reserved one, or a reserved region meets a mapping. */
  EADDRINUSE: 98,
  /** Address arithmetic overflows 64 bits, or a value is at least 2^64. */
  EOVERFLOW: 75,
} as const;

/** An errno name, e.g. `'EINVAL'`. */
export type Errno = keyof typeof ERRNO;

/** The typed error thrown by every control call. `.errno` is the name, `.code` the Linux number. */
export class IommuError extends Error {
  /** The errno name, e.g. `'EINVAL'`. */
  readonly errno: Errno;
  /** Linux's number for `errno` (`ERRNO[errno]`), e.g. 22 for EINVAL. */
  readonly code: number;

  /**
   * @param errno errno name
   * @param op the public call that failed, e.g. `'ioasMap'`
   * @param detail what was expected and what was got
   */
  constructor(errno: Errno, op: string, detail: string) {
    super(`${op}: ${errno} (${detail})`);
    this.name = 'IommuError';
    this.errno = errno;
    this.code = ERRNO[errno];
  }
}

/** Throws `IommuError(errno, op, detail)`; typed `never` so callers can use it in expressions. */
export function fail(errno: Errno, op: string, detail: string): never {
  throw new IommuError(errno, op, detail);
}

/** Runs `step`: undefined, or the IommuError it threw (anything else propagates). */
export function caught(step: () => void): IommuError | undefined {
  try {
    step();
    return undefined;
  } catch (e) {
    if (e instanceof IommuError) return e;
    throw e;
  }
}
