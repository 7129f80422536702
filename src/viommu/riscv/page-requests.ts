/**
 * Between ioasid's page requests and the guest's page-request queue: a PRI device's recoverable
 * fault (on a context with EN_PRI) is a page request on the model's ioasid fault queue; it becomes a
 * PQ record, and the guest's ATS.PRGR for that group answers it on the fault FD, which the device
 * sees as its page response. What the IOMMU answers itself (queue off, full, memory fault:
 * page-request-queue.ts) is answered at once.
 * @module
 */
import { Access, IommuError, type FaultQueueFd } from '../../api';
import { bits } from './constants';
import type { DeviceDirectory } from './device-directory';
import type { PageRequestQueue } from './page-request-queue';

export class PageRequests {
  /** Requests in the PQ awaiting ATS.PRGR: "devid:prgIndex" -> ioasid cookie. */
  private readonly awaiting = new Map<string, number>();

  constructor(private readonly directory: DeviceDirectory, private readonly queue: PageRequestQueue) {}

  /** Moves every page request waiting on the ioasid fault queue into the page-request queue. */
  forward(): void {
    const q = this.directory.pageRequests;
    if (!q) return;
    for (const r of q.fd.read()) {
      const devid = this.directory.devidOf(r.devId);
      const pid = r.pasidValid ? this.directory.pidOf(r.pasid) : undefined;
      const answer = devid === undefined ? 'failure' : this.queue.push({
        did: devid, pid, priv: (r.perm & Access.Priv) !== 0, exec: (r.perm & Access.Exec) !== 0,
        read: (r.perm & (Access.Read | Access.Exec)) !== 0, write: (r.perm & Access.Write) !== 0, prgIndex: r.grpid, addr: r.addr,
      });
      if (answer === undefined) this.awaiting.set(`${devid}:${r.grpid}`, r.cookie);
      else respond(q.fd, r.cookie, answer === 'success');
    }
  }

  /** ATS.PRGR to `devid`: PRG index [40:32] and response code [47:44] (0 Success, else failure) of the payload. */
  answer(devid: number, payload: bigint): void {
    const key = `${devid}:${Number(bits(payload, 40, 32))}`;
    const cookie = this.awaiting.get(key);
    const q = this.directory.pageRequests;
    if (cookie === undefined || !q) return; // no such group outstanding: a guest error, ignored
    this.awaiting.delete(key);
    respond(q.fd, cookie, bits(payload, 47, 44) === 0n);
  }
}

/** Answers an ioasid page request; one already answered (its device detached meanwhile) is skipped. */
function respond(fd: FaultQueueFd, cookie: number, success: boolean): void {
  try {
    fd.write([{ cookie, code: success ? 'success' : 'invalid' }]);
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
  }
}
