// Conformance, ATTACH and DETACH (VIRTIO 1.2 §5.13.6.3-4): R12-R23, L2, L3 of the README's
// coverage table. Translations are checked through iommu.translate.
import { describe, expect, test } from 'vitest';
import { Access } from '../../src/index';
import { EP1, EP2, RESERVED2, guest, ok, refused } from './fixture';
import { ATTACH_BYPASS, S, attachReq, detachReq, mapReq, unmapReq } from './wire';

const RW = 3;
const page = (domain: number, iova: bigint, phys: bigint, flags = RW) => mapReq({ domain, start: iova, end: iova + 0xfffn, phys, flags });

describe('virtio-iommu ATTACH', () => {
  test('R12 ATTACH: a non-zero reserved field is rejected with INVAL, state unchanged', () => {
    const g = guest();
    refused(g, attachReq({ domain: 1, endpoint: EP1, reserved: 0x0100 }), S.INVAL);
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    refused(g, attachReq({ domain: 2, endpoint: EP1, reserved: 1 }), S.INVAL);
  });

  test('R13 ATTACH: an unknown flag bit is rejected with INVAL', () => {
    const g = guest();
    for (const flags of [2, 0x80000000, 3]) refused(g, attachReq({ domain: 1, endpoint: EP1, flags }), S.INVAL);
  });

  test('R14 ATTACH: an unknown endpoint is rejected with NOENT', () => {
    const g = guest();
    for (const endpoint of [0x18, 0xffff, 0x10000, 0xffffffff]) refused(g, attachReq({ domain: 1, endpoint }), S.NOENT);
  });

  test('R15 ATTACH: two endpoints can share a domain and see the same mappings', () => {
    const g = guest();
    ok(g, attachReq({ domain: 5, endpoint: EP1 }));
    ok(g, page(5, 0x10_0000n, 0x8000_3000n));
    ok(g, attachReq({ domain: 5, endpoint: EP2 }));
    expect(g.vio.state().domains).toMatchObject([{ id: 5, endpoints: [EP1, EP2] }]);
    expect(g.translate(EP1, 0x10_0004n).phys).toBe(0x8000_3004n);
    expect(g.translate(EP2, 0x10_0004n).phys).toBe(0x8000_3004n); // a late joiner sees earlier mappings
    ok(g, page(5, 0x20_0000n, 0x8000_4000n));
    expect(g.translate(EP2, 0x20_0000n).phys).toBe(0x8000_4000n);
  });

  test('R16 ATTACH: F_BYPASS disagreeing with the existing domain is INVAL, the endpoint keeps its domain', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, 0x10_0000n, 0x8000_0000n));
    ok(g, attachReq({ domain: 2, endpoint: EP2, flags: ATTACH_BYPASS }));
    refused(g, attachReq({ domain: 1, endpoint: EP2, flags: ATTACH_BYPASS }), S.INVAL);
    refused(g, attachReq({ domain: 2, endpoint: EP1 }), S.INVAL);
    expect(g.translate(EP1, 0x10_0000n).phys).toBe(0x8000_0000n);
  });

  test('R17 ATTACH: an endpoint in another domain moves (implicit DETACH), an emptied domain is deleted', () => {
    const g = guest({ vio: { bypass: false } });
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, 0x10_0000n, 0x8000_0000n));
    ok(g, attachReq({ domain: 2, endpoint: EP1 }));
    expect(g.translate(EP1, 0x10_0000n).reason).toBe('not-present'); // A's mappings are gone for it
    expect(g.vio.state().domains.map((d) => d.id)).toEqual([2]);
    expect(g.status(page(1, 0x10_0000n, 0x8000_0000n))).toBe(S.NOENT);
    // A domain with another endpoint stays.
    ok(g, attachReq({ domain: 3, endpoint: EP2 }));
    ok(g, attachReq({ domain: 3, endpoint: EP1 }));
    ok(g, attachReq({ domain: 4, endpoint: EP1 }));
    expect(g.vio.state().domains.map((d) => [d.id, d.endpoints])).toEqual([[3, [EP2]], [4, [EP1]]]);
  });

  test('R18 ATTACH: an endpoint whose reserved region holds a mapping of the domain is UNSUPP', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, RESERVED2.start, 0x8000_0000n)); // fine for EP1, reserved for EP2
    refused(g, attachReq({ domain: 1, endpoint: EP2 }), S.UNSUPP);
    ok(g, unmapReq({ domain: 1, start: RESERVED2.start, end: RESERVED2.start + 0xfffn }));
    ok(g, attachReq({ domain: 1, endpoint: EP2 })); // compatible now: attached
  });

  test('R19 ATTACH: a request that is not rejected attaches (translation through the new domain)', () => {
    const g = guest({ vio: { bypass: false } });
    ok(g, attachReq({ domain: 7, endpoint: EP2 }));
    expect(g.translate(EP2, 0x10_0000n).reason).toBe('not-present');
    ok(g, page(7, 0x10_0000n, 0x8000_5000n));
    expect(g.translate(EP2, 0x10_0123n, Access.Write).phys).toBe(0x8000_5123n);
  });

  test('ATTACH: re-attaching to the current domain is OK and keeps the mappings', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, 0x10_0000n, 0x8000_0000n));
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    expect(g.translate(EP1, 0x10_0000n).phys).toBe(0x8000_0000n);
  });

  test('ATTACH: F_BYPASS makes a bypass domain (identity), INVAL unless BYPASS_CONFIG was negotiated', () => {
    const g = guest({ vio: { bypass: false }, ack: 1n << 32n | 4n });
    refused(g, attachReq({ domain: 1, endpoint: EP1, flags: ATTACH_BYPASS }), S.INVAL);
    g.vio.ackFeatures(g.vio.deviceFeatures);
    ok(g, attachReq({ domain: 1, endpoint: EP1, flags: ATTACH_BYPASS }));
    expect(g.translate(EP1, 0x8000_2345n, Access.Write).phys).toBe(0x8000_2345n);
    expect(g.vio.state().domains).toMatchObject([{ id: 1, bypass: true, endpoints: [EP1] }]);
  });

  test('ATTACH: a domain outside domain_range is RANGE', () => {
    const g = guest({ vio: { domainRange: { start: 10, end: 20 } } });
    refused(g, attachReq({ domain: 9, endpoint: EP1 }), S.RANGE);
    refused(g, attachReq({ domain: 21, endpoint: EP1 }), S.RANGE);
    ok(g, attachReq({ domain: 20, endpoint: EP1 }));
  });

  test('L3 ATTACH: domain ID 0 and the top u32 work without DOMAIN_RANGE', () => {
    const g = guest();
    ok(g, attachReq({ domain: 0, endpoint: EP1 }));
    ok(g, attachReq({ domain: 0xffffffff, endpoint: EP2 }));
    expect(g.vio.state().domains.map((d) => d.id)).toEqual([0, 0xffffffff]);
  });

  test('L2 ATTACH: after the last endpoint leaves, replaying the same MAPs on a new ATTACH succeeds', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, 0x10_0000n, 0x8000_0000n));
    ok(g, page(1, 0x10_1000n, 0x8000_1000n));
    ok(g, detachReq({ domain: 1, endpoint: EP1 }));
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, 0x10_0000n, 0x8000_0000n));
    ok(g, page(1, 0x10_1000n, 0x8000_1000n));
    ok(g, attachReq({ domain: 2, endpoint: EP1 })); // leaving by ATTACH elsewhere frees domain 1 too
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, page(1, 0x10_0000n, 0x8000_0000n));
  });
});

describe('virtio-iommu DETACH', () => {
  test('R20 DETACH: reserved is ignored', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    expect(g.status(detachReq({ domain: 1, endpoint: EP1, reserved: 0xffff_ffff_ffff_ffffn }))).toBe(S.OK);
    expect(g.vio.state().endpoints[EP1]).toBeNull();
  });

  test('R21 DETACH: an unknown endpoint is NOENT', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    refused(g, detachReq({ domain: 1, endpoint: 0x30 }), S.NOENT);
  });

  test('R22 DETACH: an absent domain, or one the endpoint is not in, is INVAL and changes nothing', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, attachReq({ domain: 2, endpoint: EP2 }));
    refused(g, detachReq({ domain: 3, endpoint: EP1 }), S.INVAL);
    refused(g, detachReq({ domain: 2, endpoint: EP1 }), S.INVAL);
  });

  test('R23 DETACH: afterwards the endpoint reaches none of the domain mappings (bypass or blocked)', () => {
    for (const bypass of [false, true]) {
      const g = guest({ vio: { bypass } });
      ok(g, attachReq({ domain: 1, endpoint: EP1 }));
      ok(g, page(1, 0x10_0000n, 0x8000_7000n));
      expect(g.translate(EP1, 0x10_0000n).phys).toBe(0x8000_7000n);
      ok(g, detachReq({ domain: 1, endpoint: EP1 }));
      const t = g.translate(EP1, 0x10_0000n);
      if (bypass) expect(t.phys).toBe(0x10_0000n);
      else expect(t.reason).toBe('not-attached');
      expect(g.vio.state().domains).toEqual([]);
    }
  });
});
