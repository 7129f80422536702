// Conformance, the event queue (VIRTIO 1.2 §5.13.6.9): R48-R52 of the README's coverage table.
// Faults come from the owner's translations (iommu.faults) and from workers via reportFault.
import { describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../../src/index';
import { EP1, EP2, guest, ok } from './fixture';
import { attachReq, mapReq, parseFault } from './wire';

const READ = 1;
const WRITE = 2;
const ADDRESS = 0x100;

function faulted(bypass = false) {
  const g = guest({ vio: { bypass } });
  ok(g, attachReq({ domain: 1, endpoint: EP1 }));
  ok(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: READ }));
  return g;
}

function pop(g: ReturnType<typeof guest>) {
  const b = new Uint8Array(24).fill(0xff);
  expect(g.vio.nextEvent(b)).toBe(24);
  return parseFault(b);
}

describe('virtio-iommu events', () => {
  test('R48 fault: reserved and reserved1 are zero', () => {
    const g = faulted();
    g.translate(EP1, 0x20_0000n);
    const f = pop(g);
    expect(f.reserved).toBe(0n);
    expect(f.reserved1).toBe(0n);
  });

  test('R49 fault: undefined flags are zero; READ/WRITE follow the access', () => {
    const g = faulted();
    g.translate(EP1, 0x10_0000n, Access.Write); // permission
    g.translate(EP1, 0x30_0000n, Access.Read); // not mapped
    const a = pop(g);
    const b = pop(g);
    expect(a.flags & ~0x107).toBe(0);
    expect(a).toMatchObject({ reason: 2, flags: WRITE | ADDRESS });
    expect(b).toMatchObject({ reason: 2, flags: READ | ADDRESS });
  });

  test('R50 fault: the endpoint ID is the faulting endpoint; unattached without bypass is a DOMAIN fault', () => {
    const g = faulted();
    g.translate(EP2, 0x1000n);
    expect(pop(g)).toMatchObject({ reason: 1, endpoint: EP2 });
    g.iommu.translate(0x77, NO_PASID, 0x1000n, Access.Read); // not an endpoint: no report
    expect(g.vio.pendingEvents).toBe(0);
  });

  test('R51 fault: ADDRESS is set and address is the IOVA', () => {
    const g = faulted();
    g.translate(EP1, 0x12_3456_7890n);
    const f = pop(g);
    expect(f.flags & ADDRESS).toBe(ADDRESS);
    expect(f.address).toBe(0x12_3456_7890n);
  });

  test('R52 fault: a report is never split: a 16-byte buffer stays unused and the report waits', () => {
    const g = faulted();
    g.translate(EP1, 0x20_0000n);
    const short = new Uint8Array(16).fill(0xee);
    expect(g.vio.nextEvent(short)).toBe(0);
    expect(short.every((b) => b === 0xee)).toBe(true);
    expect(g.vio.pendingEvents).toBe(1);
    expect(pop(g).address).toBe(0x20_0000n);
    expect(g.vio.nextEvent(new Uint8Array(24))).toBe(0);
  });

  test('events: onEvent is called per report; worker faults arrive through reportFault; a full queue drops and counts', () => {
    const g = faulted();
    let kicks = 0;
    g.vio.onEvent = () => kicks++;
    g.translate(EP1, 0x20_0000n);
    g.vio.reportFault({ rid: EP1, pasid: NO_PASID, iova: 0x40_0000n, access: Access.Write, reason: 'not-present', level: 0, stage: 0 });
    expect(kicks).toBe(2);
    expect(pop(g).address).toBe(0x20_0000n);
    expect(pop(g)).toMatchObject({ address: 0x40_0000n, flags: WRITE | ADDRESS, reason: 2 });
    for (let i = 0; i < 300; i++) g.translate(EP1, 0x20_0000n);
    expect(g.vio.pendingEvents).toBe(256);
    expect(g.vio.droppedEvents).toBe(44);
    g.vio.reportFault(null as never); // never throws
    g.vio.reset();
    expect(g.vio.pendingEvents).toBe(0);
  });
});
