/**
 * Fault queues (iommufd's FAULT object and fault FD, `IOMMU_FAULT_QUEUE_ALLOC`, Linux include/uapi/linux/iommufd.h `struct iommu_fault_alloc`):
 * page requests (PCIe PRI) of devices attached to a HWPT allocated with `faultId` are delivered
 * here; the user reads them and answers each with SUCCESS or INVALID, which goes back to the
 * device (`DeviceFd.pageResponses()`), which may then retry its DMA.
 *
 * Where requests come from: the Wasm core appends a record to the translating thread's page-request
 * ring (one per translator slot, assembly/nested.ts) when a recoverable fault (not present,
 * permission, A/D needed) hits a domain with page requests enabled, from a device created with
 * `pri: true`. Worker translators do this too; the owner drains every ring on `read()`, `poll()`,
 * detach and destroy. Rings are single-producer (the slot's thread advances the tail) and
 * single-consumer (the owner advances the head).
 *
 * Semantics kept from iommufd: `read()` never blocks and moves each request (a group of one page,
 * LAST_PAGE) into the response table under a cookie (from 1); `write()` answers by cookie, in order,
 * stopping at the first bad response (EINVAL: unknown cookie or code) and returning the count done
 * when that is nonzero; detaching or replacing a device's (RID or PASID) attachment answers its
 * pending requests INVALID; destroying the FAULT object answers everything INVALID. The fault FD holds
 * a reference on the object (destroy is EBUSY until it is closed), as do the HWPTs using it.
 * Duplicates — the same device, PASID, page and access while one is queued or unanswered — are not
 * queued again: the device gets one answer.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { DeviceFd } from './device';
import type { Engine } from './fd-state';
import { fail } from '../base/errno';
import type { FdState } from './fd-state';
import { FdObject } from './object-table';

/** One page request as `read()` returns it (iommufd's `struct iommu_hwpt_pgfault`). */
export interface PageRequest {
  /** The device, by its ID in the FD that owns the queue. */
  devId: number;
  /** True when the request carried a PASID (`pasid` is then valid). */
  pasidValid: boolean;
  /** The request's PASID (when `pasidValid`). */
  pasid: number;
  /** Page request group index (9 bits), per device. */
  grpid: number;
  /** Access bits of the faulting request: Read 1, Write 2, Exec 4, Priv 8 (IOMMU_PGFAULT_PERM_*). */
  perm: number;
  /** Page address (4 KiB aligned). */
  addr: bigint;
  /** Always 0, as in iommufd (one page per request). */
  length: number;
  /** Last request of its group (always: groups of one). */
  lastPage: boolean;
  /** Names this request in `write()`. */
  cookie: number;
}

/** An answer to a page request. */
export interface PageResponseArgs {
  /** The `cookie` of the page request being answered. */
  cookie: number;
  /** 'success' (0): the page is there now, retry; 'invalid' (1): give up. */
  code: 'success' | 'invalid' | 0 | 1;
}

/** A page response as the device receives it (`DeviceFd.pageResponses()`). */
export interface PageResponse {
  /** True when the request carried a PASID. */
  pasidValid: boolean;
  /** The request's PASID (when `pasidValid`). */
  pasid: number;
  /** The request's page request group index. */
  grpid: number;
  /** The request's page address. */
  addr: bigint;
  /** 'success': the page is there now, retry the DMA; 'invalid': give up. */
  code: 'success' | 'invalid';
}

/** A HWPT that can deliver page requests. */
export interface FaultingHwpt {
  readonly id: number;
  readonly domain: number;
}

/** @internal A page request held by a queue (exported for snapshots, src/snapshot/). */
export interface Request {
  dev: DeviceFd;
  hwpt: FaultingHwpt;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
  cookie: number;
}

interface Sink {
  queue: FaultQueue;
  hwpt: FaultingHwpt;
}

/** Per engine: domain index -> where its page requests go. */
const sinks = new WeakMap<Engine, Map<number, Sink>>();
const groupCounters = new WeakMap<DeviceFd, number>();

function sinksOf(engine: Engine): Map<number, Sink> {
  let m = sinks.get(engine);
  if (!m) sinks.set(engine, (m = new Map()));
  return m;
}

function respond(dev: DeviceFd, r: { pasid: number; grpid: number; addr: bigint }, code: 'success' | 'invalid'): void {
  dev.pushPageResponse({ pasidValid: r.pasid !== abi.NO_PASID, pasid: r.pasid, grpid: r.grpid, addr: r.addr, code });
}

/**
 * Moves every translator slot's page-request ring into the fault queues (owner thread). A record
 * whose attachment is gone (detached, replaced, destroyed since) is answered INVALID at once.
 */
export function drainPageRequests(engine: Engine): void {
  const routes = sinksOf(engine);
  engine.drainPageRequests(({ rid, pasid, iova, domain, access }) => {
    const dev = engine.devices.get(rid);
    if (!dev) return;
    const sink = routes.get(domain);
    const addr = iova & ~BigInt(abi.PAGE_SIZE - 1);
    if (sink && sink.queue.accepts(dev, pasid, sink.hwpt)) sink.queue.deliver(dev, sink.hwpt, pasid, addr, access);
    else respond(dev, { pasid, grpid: nextGroup(dev), addr }, 'invalid');
  });
}

/** @internal Snapshot support: the group index `dev`'s next page request gets. */
export function groupIndex(dev: DeviceFd): number {
  return groupCounters.get(dev) ?? 0;
}

/** @internal Snapshot support: sets the next group index of a restored device. */
export function setGroupIndex(dev: DeviceFd, next: number): void {
  groupCounters.set(dev, next & 511);
}

/** @internal A queue's private state, by reference (snapshots). */
export interface FaultQueueState {
  /** Delivered, not yet read (oldest first). */
  queued: readonly Request[];
  /** Read, awaiting a response (cookies ascending). */
  pending: readonly Request[];
  nextCookie: number;
  /** HWPTs delivering here, in the order they were added. */
  hwpts: readonly FaultingHwpt[];
  /** The fault FD is still open. */
  fdOpen: boolean;
}

function nextGroup(dev: DeviceFd): number {
  const g = groupCounters.get(dev) ?? 0;
  groupCounters.set(dev, (g + 1) & 511);
  return g;
}

/** The FAULT object. */
export class FaultQueue extends FdObject {
  readonly type = 'fault' as const;
  /** Delivered, not yet read. */
  private queued: Request[] = [];
  /** Read, awaiting a response: cookie -> request. */
  private readonly pending = new Map<number, Request>();
  private nextCookie = 1;
  /** HWPTs delivering here. */
  private readonly hwpts = new Set<FaultingHwpt>();

  /** @internal */
  constructor(readonly engine: Engine, readonly state: FdState) {
    super();
  }

  /** @internal Snapshot support: the private state, by reference. */
  exportState(): FaultQueueState {
    return {
      queued: this.queued, pending: [...this.pending.values()].sort((a, b) => a.cookie - b.cookie),
      nextCookie: this.nextCookie, hwpts: [...this.hwpts], fdOpen: fds.get(this)?.closed === false,
    };
  }

  /**
   * @internal Snapshot support: fills a restored queue (fresh from the constructor, published):
   * routes its HWPTs' page requests here and makes its fault FD (closed when `fdOpen` is false).
   * The users count is restored by the caller. @returns the fault FD.
   */
  importState(s: FaultQueueState): FaultQueueFd {
    for (const hwpt of s.hwpts) this.hwptAdded(hwpt);
    this.queued = [...s.queued];
    for (const r of s.pending) this.pending.set(r.cookie, r);
    this.nextCookie = s.nextCookie;
    const fd = new FaultQueueFd(this);
    fds.set(this, fd);
    if (!s.fdOpen) fd.close();
    return fd;
  }

  /** @internal Routes `hwpt`'s page requests here and enables them in the core. */
  hwptAdded(hwpt: FaultingHwpt): void {
    this.engine.setDomainPri(hwpt.domain, true);
    sinksOf(this.engine).set(hwpt.domain, { queue: this, hwpt });
    this.hwpts.add(hwpt);
    this.users++;
  }

  /** @internal The HWPT is being destroyed (no attachment is left, so nothing is pending from it). */
  hwptReleased(hwpt: FaultingHwpt): void {
    if (!this.hwpts.delete(hwpt)) return;
    drainPageRequests(this.engine);
    sinksOf(this.engine).delete(hwpt.domain);
    this.answerAll((r) => r.hwpt === hwpt);
    this.users--;
  }

  /** @internal True when `dev` is bound to this queue's FD with `pasid` attached to `hwpt`. */
  accepts(dev: DeviceFd, pasid: number, hwpt: FaultingHwpt): boolean {
    return this.state.devices.has(dev) && dev.attachedHwpts().get(pasid)?.id === hwpt.id;
  }

  /** @internal Queues a request unless the same one is queued or unanswered. */
  deliver(dev: DeviceFd, hwpt: FaultingHwpt, pasid: number, addr: bigint, perm: number): void {
    const same = (r: Request): boolean => r.dev === dev && r.pasid === pasid && r.addr === addr && r.perm === perm;
    if (this.queued.some(same)) return;
    for (const r of this.pending.values()) if (same(r)) return;
    this.queued.push({ dev, hwpt, pasid, grpid: nextGroup(dev), perm, addr, cookie: 0 });
  }

  /** @internal (dev, pasid) left `hwpt` (detach or replace): its requests are answered INVALID. */
  detached(dev: DeviceFd, pasid: number, hwpt: FaultingHwpt): void {
    drainPageRequests(this.engine);
    this.answerAll((r) => r.dev === dev && r.pasid === pasid && r.hwpt === hwpt);
  }

  private answerAll(match: (r: Request) => boolean): void {
    for (const r of this.queued.filter(match)) respond(r.dev, r, 'invalid');
    this.queued = this.queued.filter((r) => !match(r));
    for (const [cookie, r] of this.pending) {
      if (!match(r)) continue;
      this.pending.delete(cookie);
      respond(r.dev, r, 'invalid');
    }
  }

  /** @internal */
  read(max: number): PageRequest[] {
    drainPageRequests(this.engine);
    const out: PageRequest[] = [];
    while (out.length < max && this.queued.length > 0) {
      const r = this.queued.shift()!;
      r.cookie = this.nextCookie++;
      this.pending.set(r.cookie, r);
      out.push({
        devId: r.dev.devId ?? 0, pasidValid: r.pasid !== abi.NO_PASID, pasid: r.pasid, grpid: r.grpid,
        perm: r.perm, addr: r.addr, length: 0, lastPage: true, cookie: r.cookie,
      });
    }
    return out;
  }

  /** @internal Requests delivered and not read yet. */
  get queuedCount(): number {
    drainPageRequests(this.engine);
    return this.queued.length;
  }

  /** @internal */
  write(op: string, responses: unknown): number {
    if (!Array.isArray(responses)) fail('EINVAL', op, 'expected an array of { cookie, code }');
    let done = 0;
    for (const resp of responses as unknown[]) {
      const o = resp as Partial<PageResponseArgs> | null;
      const code = o?.code === 'success' || o?.code === 0 ? 'success' : o?.code === 'invalid' || o?.code === 1 ? 'invalid' : undefined;
      const r = typeof o?.cookie === 'number' ? this.pending.get(o.cookie) : undefined;
      if (code === undefined || r === undefined) {
        if (done > 0) return done;
        fail('EINVAL', op, code === undefined ? `response ${done}: code must be 'success' or 'invalid'` : `response ${done}: no page request with cookie ${String(o?.cookie)}`);
      }
      this.pending.delete(r.cookie);
      respond(r.dev, r, code);
      done++;
    }
    return done;
  }

  override details(): Record<string, unknown> {
    return { queued: this.queued.length, pending: this.pending.size };
  }

  release(): void {
    drainPageRequests(this.engine);
    this.answerAll(() => true);
  }
}

/**
 * The fault FD (`out_fault_fd`): read page requests, write responses. Holds a reference on its
 * FAULT object until `close()`.
 */
export class FaultQueueFd {
  private open = true;

  /** @internal */
  constructor(private readonly queue: FaultQueue) {
    queue.users++;
  }

  /** The FAULT object's ID in its ioasid FD (for `hwptAlloc({ faultId })` and `destroy`). */
  get id(): number {
    return this.queue.id;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return !this.open;
  }

  /**
   * Takes up to `max` queued page requests (never blocks; [] when none), moving them to the
   * response table under their cookies. @throws EBADF closed.
   */
  read(max = Infinity): PageRequest[] {
    this.check('faultQueue.read');
    return this.queue.read(max);
  }

  /** Page requests waiting to be read (iommufd's EPOLLIN). @throws EBADF closed. */
  poll(): number {
    this.check('faultQueue.poll');
    return this.queue.queuedCount;
  }

  /**
   * Answers page requests by cookie, in order.
   * @returns how many were answered; stops at the first bad response and returns the count so far
   * when nonzero (iommufd's write()). @throws EINVAL the first response is bad (unknown cookie, code
   * not 'success'/'invalid'); EBADF closed.
   */
  write(responses: PageResponseArgs[]): number {
    this.check('faultQueue.write');
    return this.queue.write('faultQueue.write', responses);
  }

  /** Closes the fault FD (its reference on the FAULT object goes). Closing twice is a no-op. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.queue.users--;
  }

  private check(op: string): void {
    if (!this.open || this.queue.state.closed) fail('EBADF', op, 'the fault FD is closed');
  }
}

const fds = new WeakMap<FaultQueue, FaultQueueFd>();

/** @internal IOMMU_FAULT_QUEUE_ALLOC: a published FAULT object and its FD. */
export function faultQueueCreate(state: FdState, op: string): { id: number; fd: FaultQueueFd } {
  const queue = state.table.create(op, () => new FaultQueue(state.engine, state));
  const fd = new FaultQueueFd(queue);
  fds.set(queue, fd);
  return { id: queue.id, fd };
}

/** @internal FD close: the fault FDs go first (iommufd keeps the context alive for them; we close them). */
export function closeFaultFds(state: FdState): void {
  for (const o of state.table.objects()) if (o instanceof FaultQueue) fds.get(o)?.close();
}
