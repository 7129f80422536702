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
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  EDEADLOCK: 35,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EOVERFLOW: 75,
} as const;

/** An errno name, e.g. `'EINVAL'`. */
export type Errno = keyof typeof ERRNO;

/** The typed error thrown by every control call. `.errno` is the name, `.code` the Linux number. */
export class IommuError extends Error {
  readonly errno: Errno;
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
