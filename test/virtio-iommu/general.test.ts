// Conformance, request framing and device-wide rules (VIRTIO 1.2 §5.13.6, §5.13.6.1): R6-R11, R53,
// L1, L4 of the README's coverage table.
import { describe, expect, test } from 'vitest';
import { Access } from '../../src/index';
import { EP1, EP2, guest, ok, refused } from './fixture';
import { S, attachReq, cfg, detachReq, mapReq, probeReq, unmapReq } from './wire';

const RW = 3;

describe('virtio-iommu requests: framing and general rules', () => {
  test('R6 general: a valid request of each type answers OK', () => {
    const g = guest();
    expect(g.status(attachReq({ domain: 1, endpoint: EP1 }))).toBe(S.OK);
    expect(g.status(mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: RW }))).toBe(S.OK);
    expect(g.status(unmapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn }))).toBe(S.OK);
    expect(g.status(probeReq({ endpoint: EP1 }))).toBe(S.OK);
    expect(g.status(detachReq({ domain: 1, endpoint: EP1 }))).toBe(S.OK);
  });

  test('R7 general: an unknown request type gets no answer (used length 0, buffer untouched)', () => {
    const g = guest();
    for (const type of [0, 6, 9, 0xff]) {
      const r = attachReq({ domain: 1, endpoint: EP1 });
      r[0] = type;
      const { used, w } = g.send(r);
      expect(used).toBe(0);
      expect([...w]).toEqual([0xff, 0xff, 0xff, 0xff]);
    }
    expect(g.vio.state().domains).toEqual([]);
  });

  test('R8 general: head.reserved is ignored', () => {
    const g = guest();
    expect(g.status(attachReq({ domain: 1, endpoint: EP1, headReserved: 0xffffff }))).toBe(S.OK);
    expect(g.vio.state().endpoints[EP1]).toBe(1);
  });

  test('R9 general: tail.reserved is written as zero', () => {
    const g = guest();
    const { used, w } = g.send(attachReq({ domain: 1, endpoint: EP1 }));
    expect(used).toBe(4);
    expect([...w]).toEqual([S.OK, 0, 0, 0]);
    const bad = g.send(attachReq({ domain: 1, endpoint: 0x7777 }));
    expect([...bad.w]).toEqual([S.NOENT, 0, 0, 0]);
  });

  test('R10 general: an unattached endpoint without bypass cannot reach memory', () => {
    const g = guest({ vio: { bypass: false } });
    expect(g.translate(EP1, 0x8000_0000n).reason).toBe('not-attached');
    expect(g.iommu.dmaRead(EP1, 0, 0x8000_0000n, new Uint8Array(8)).bytes).toBe(0);
    expect(g.translate(EP2, 0x8000_0000n, Access.Write).ok).toBe(false);
  });

  test('R11 general: no room for the head or the tail leaves the buffers untouched (used length 0)', () => {
    const g = guest();
    const r = attachReq({ domain: 1, endpoint: EP1 });
    for (const size of [0, 2, 3]) {
      const w = new Uint8Array(size).fill(0xee);
      expect(g.vio.handleRequest(r, w)).toBe(0);
      expect([...w]).toEqual(new Array(size).fill(0xee));
    }
    expect(g.vio.handleRequest(r.subarray(0, 3), new Uint8Array(4).fill(0xee))).toBe(0);
    expect(g.vio.state().domains).toEqual([]);
  });

  test('general: a readable part shorter than its type is INVAL; a longer one is read up to its size', () => {
    const g = guest();
    refused(g, attachReq({ domain: 1, endpoint: EP1 }).subarray(0, 19), S.INVAL);
    const long = new Uint8Array(64).fill(0xcc);
    long.set(attachReq({ domain: 1, endpoint: EP1 }));
    expect(g.status(long)).toBe(S.OK);
  });

  test('L1 general: the used length is exactly 4, and probe_size + 4 for PROBE', () => {
    const g = guest();
    expect(g.send(attachReq({ domain: 1, endpoint: EP1 })).used).toBe(4);
    expect(g.send(mapReq({ domain: 1, start: 0n, end: 0xfffn, phys: 0n, flags: RW })).used).toBe(4);
    expect(g.send(unmapReq({ domain: 9, start: 0n, end: 0xfffn })).used).toBe(4);
    expect(g.send(probeReq({ endpoint: EP1 })).used).toBe(cfg.probeSize(g.vio.config) + 4);
    expect(g.send(detachReq({ domain: 1, endpoint: EP1 }), 16).used).toBe(4);
  });

  test('L4 general: a batch of MAPs is processed completely and in order', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    for (let i = 0n; i < 64n; i++) ok(g, mapReq({ domain: 1, start: 0x10_0000n + i * 0x1000n, end: 0x10_0fffn + i * 0x1000n, phys: 0x8000_0000n + ((i * 7n) % 64n) * 0x1000n, flags: RW }));
    for (let i = 0n; i < 64n; i++) expect(g.translate(EP1, 0x10_0010n + i * 0x1000n).phys).toBe(0x8000_0010n + ((i * 7n) % 64n) * 0x1000n);
    // The same request twice in a row: the second overlaps the first.
    expect(g.status(mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0n, flags: RW }))).toBe(S.INVAL);
  });

  test('R53 reset: after a device reset no endpoint is attached and no domain exists', () => {
    const g = guest({ vio: { bypass: false } });
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, attachReq({ domain: 2, endpoint: EP2 }));
    ok(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: RW }));
    expect(g.translate(EP1, 0x10_0000n).ok).toBe(true);
    g.vio.reset();
    expect(g.vio.state()).toMatchObject({ domains: [], endpoints: { [EP1]: null, [EP2]: null }, driverFeatures: 0n });
    expect(g.translate(EP1, 0x10_0000n).reason).toBe('not-attached');
    // Domain IDs are free again and the old mappings are gone.
    g.vio.ackFeatures(g.vio.deviceFeatures);
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    expect(g.translate(EP1, 0x10_0000n).reason).toBe('not-present');
  });
});
