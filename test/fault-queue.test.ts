// Fault queues and page requests (include/uapi/linux/iommufd.h `struct iommu_fault_alloc`; selftest cases 49, 53, 79): a PRI device faulting
// through a HWPT with a fault queue queues a page request; read() hands it out under a cookie;
// write() answers it back to the device, which retries; detach/replace answer pending requests
// INVALID; lifetimes (the fault FD and HWPTs hold the FAULT object).
import { beforeEach, describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../src/index';
import { createInMode, RAM_MODES, type RamMode } from './ram-modes';
import { GuestRam, GuestTables } from './vectors/guest-tables';
import { err, ok } from './helpers';

const RAM = 0x1000_0000n;
const pte = (pa: bigint): bigint => ((pa >> 12n) << 10n) | 0xd7n; // V R W U A D

/** Where guest RAM is for the running test (test/ram-modes.ts); set by the mode's beforeEach. */
let mode: RamMode = 'engine';

function world(pri = true) {
  const { iommu, rams } = createInMode(mode, { base: RAM, bytes: 4 << 20 }, { translators: 2, iotlbEntries: 64, maxDomains: 32, maxMemoryBytes: 32 << 20 });
  const dev = ok.addDevice(iommu, { bdf: '00:07.0', pri });
  const fd = ok.open(iommu);
  const devId = dev.bind(fd);
  const ram = new GuestRam(rams[0]!, RAM);
  const root = ram.table();
  const t = new GuestTables(ram, root, 3, (a) => ((a >> 12n) << 10n) | 1n);
  const q = ok.faultQueueAlloc(fd);
  const iopf = fd.hwptAlloc({ devId, pasid: true, faultId: q.id, table: { format: 'sv39', root } });
  return { iommu, dev, fd, devId, ram, t, q, iopf };
}


// Page requests raised by walks of tables in guest RAM, wherever the RAM is.
describe.each(RAM_MODES)('page requests, RAM in %s', (m) => {
  beforeEach(() => {
    mode = m;
  });

  test('53: fault -> read one record -> respond SUCCESS -> the device retries and translates', () => {
    const w = world();
    w.dev.attach(w.iopf);
    const iova = 0xdead_beafn;
    const t = w.iommu.translate(w.dev.rid, NO_PASID, iova, Access.Read | Access.Write);
    expect(t.fault).toMatchObject({ reason: 'not-present', stage: 1, pageRequest: true });
    expect(w.q.fd.poll()).toBe(1);
    const [req, ...rest] = w.q.fd.read();
    expect(rest).toEqual([]);
    expect(req).toMatchObject({ devId: w.devId, pasidValid: false, perm: Access.Read | Access.Write, addr: 0xdead_b000n, length: 0, lastPage: true, cookie: 1 });
    expect(w.q.fd.read()).toEqual([]); // never blocks
    // The guest maps the page, then answers.
    w.t.map(0xdead_b000n, 0, pte(0x2000_0000n), () => w.ram.table());
    expect(w.q.fd.write([{ cookie: req!.cookie, code: 'success' }])).toBe(1);
    expect(w.dev.pageResponses()).toEqual([{ pasidValid: false, pasid: 0, grpid: req!.grpid, addr: 0xdead_b000n, code: 'success' }]);
    expect(w.iommu.translate(w.dev.rid, NO_PASID, iova, Access.Write)).toMatchObject({ ok: true, phys: 0x2000_0eafn });
  });

  test('79: a PASID request carries its PASID; replace answers pending ones INVALID', () => {
    const w = world();
    const pasid = w.fd.pasidAlloc({ pasid: 2048 });
    w.dev.attach(w.iopf, { pasid });
    expect(w.iommu.translate(w.dev.rid, pasid, 0x4000, Access.Exec | Access.Priv).fault!.pageRequest).toBe(true);
    const [req] = w.q.fd.read();
    expect(req).toMatchObject({ pasidValid: true, pasid, perm: Access.Exec | Access.Priv, addr: 0x4000n });
    expect(w.q.fd.write([{ cookie: req!.cookie, code: 0 }])).toBe(1);
    expect(w.dev.pageResponses()).toMatchObject([{ pasid, code: 'success' }]);
    // A second request, read but not answered, then the PASID moves to another HWPT.
    w.iommu.translate(w.dev.rid, pasid, 0x5000, Access.Read);
    const [pending] = w.q.fd.read();
    const other = w.fd.hwptAlloc({ devId: w.devId, pasid: true, table: { format: 'sv39', root: w.t.root } });
    w.dev.attach(other, { pasid });
    expect(w.dev.pageResponses()).toMatchObject([{ pasid, addr: 0x5000n, code: 'invalid' }]);
    err.faultWrite('EINVAL', w.q.fd, [{ cookie: pending!.cookie, code: 'success' }]); // already answered
    w.dev.detach({ pasid });
    w.fd.destroy(w.iopf);
    w.q.fd.close();
    w.fd.destroy(w.q.id);
  });

  test('detach answers queued (unread) and pending (unanswered) requests INVALID', () => {
    const w = world();
    w.dev.attach(w.iopf);
    w.iommu.translate(w.dev.rid, NO_PASID, 0x1000, Access.Read);
    w.q.fd.read(); // pending
    w.iommu.translate(w.dev.rid, NO_PASID, 0x2000, Access.Read); // queued
    w.dev.detach();
    expect(w.dev.pageResponses().map((r) => [r.addr, r.code])).toEqual([[0x2000n, 'invalid'], [0x1000n, 'invalid']]);
    expect(w.q.fd.read()).toEqual([]);
  });

  test('write: unknown cookie or bad code is EINVAL; a bad response after good ones returns the count', () => {
    const w = world();
    w.dev.attach(w.iopf);
    for (const a of [0x1000, 0x2000, 0x3000]) w.iommu.translate(w.dev.rid, NO_PASID, a, Access.Read);
    const reqs = w.q.fd.read(2);
    expect(reqs.map((r) => r.cookie)).toEqual([1, 2]);
    expect(w.q.fd.poll()).toBe(1);
    err.faultWrite('EINVAL', w.q.fd, [{ cookie: 99, code: 'success' }]);
    err.faultWrite('EINVAL', w.q.fd, [{ cookie: 1, code: 'maybe' as never }]);
    expect(w.q.fd.write([{ cookie: 1, code: 'invalid' }, { cookie: 99, code: 'success' }, { cookie: 2, code: 'success' }])).toBe(1);
    expect(w.q.fd.write([{ cookie: 2, code: 'success' }])).toBe(1);
  });

  test('a repeated fault while one is outstanding is not queued twice', () => {
    const w = world();
    w.dev.attach(w.iopf);
    for (let i = 0; i < 5; i++) w.iommu.translate(w.dev.rid, NO_PASID, 0x7010 + i, Access.Read);
    const [r] = w.q.fd.read();
    for (let i = 0; i < 5; i++) w.iommu.translate(w.dev.rid, NO_PASID, 0x7010, Access.Read);
    expect(w.q.fd.poll()).toBe(0);
    w.q.fd.write([{ cookie: r!.cookie, code: 'success' }]);
    w.iommu.translate(w.dev.rid, NO_PASID, 0x7010, Access.Read);
    expect(w.q.fd.poll()).toBe(1); // answered: a new fault is a new request
  });

  test('only PRI devices send page requests; configuration faults never do', () => {
    const w = world(false);
    w.dev.attach(w.iopf);
    const t = w.iommu.translate(w.dev.rid, NO_PASID, 0x1000, Access.Read);
    expect(t.fault!.reason).toBe('not-present');
    expect(t.fault!.pageRequest).toBeUndefined();
    expect(w.q.fd.poll()).toBe(0);
    const p = world(true);
    p.dev.attach(p.iopf);
    expect(p.iommu.translate(p.dev.rid, NO_PASID, 0x40_0000_0000, Access.Read).fault).toMatchObject({ reason: 'non-canonical' });
    expect(p.q.fd.poll()).toBe(0);
  });

  test('an engine-managed HWPT with a fault queue delivers page requests too', () => {
    const w = world();
    const ioas = w.fd.ioasAlloc();
    const hwpt = w.fd.hwptAlloc({ devId: w.devId, ptId: ioas, faultId: w.q.id });
    w.dev.attach(hwpt);
    expect(w.iommu.translate(w.dev.rid, NO_PASID, 0x9000, Access.Write).fault).toMatchObject({ reason: 'not-present', stage: 0, pageRequest: true });
    const [r] = w.q.fd.read();
    w.fd.ioasMap(ioas, { iova: 0x9000, length: 4096, phys: 0x5000_0000 });
    w.q.fd.write([{ cookie: r!.cookie, code: 'success' }]);
    expect(w.iommu.translate(w.dev.rid, NO_PASID, 0x9000, Access.Write)).toMatchObject({ ok: true, phys: 0x5000_0000n });
    err.hwptAlloc('EOPNOTSUPP', w.fd, { devId: w.devId, ptId: ioas, nestParent: true, faultId: w.q.id });
  });
});

describe('fault queue lifetimes', () => {
  test('the fault FD and every HWPT using the queue hold it; close order is free', () => {
    const w = world();
    err.destroy('EBUSY', w.fd, w.q.id); // HWPT + open fault FD
    w.fd.destroy(w.iopf);
    err.destroy('EBUSY', w.fd, w.q.id); // open fault FD
    w.q.fd.close();
    err.faultRead('EBADF', w.q.fd);
    w.fd.destroy(w.q.id);
    expect(w.fd.objects().map((o) => o.type)).toEqual(['device']);
  });

  test('closing the ioasid FD closes its fault FDs and answers what is outstanding', () => {
    const w = world();
    w.dev.attach(w.iopf);
    w.iommu.translate(w.dev.rid, NO_PASID, 0x1000, Access.Read);
    w.fd.close();
    expect(w.dev.pageResponses()).toMatchObject([{ addr: 0x1000n, code: 'invalid' }]);
    expect(w.q.fd.closed).toBe(true);
    err.faultPoll('EBADF', w.q.fd);
  });

  test('faultQueueAlloc objects show up as fault', () => {
    const w = world();
    expect(w.fd.objects().find((o) => o.id === w.q.id)).toMatchObject({ type: 'fault' });
    expect(w.fd.objects().find((o) => o.id === w.iopf)).toMatchObject({ type: 'hwpt-user' });
  });
});
