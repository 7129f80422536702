// Conformance, MAP and UNMAP (VIRTIO 1.2 §5.13.6.5-6): R24-R34, L5, L7, L8 of the README's
// coverage table, including the spec's seven UNMAP examples.
import { describe, expect, test } from 'vitest';
import { Access } from '../../src/index';
import { EP1, EP2, MSI, RESERVED2, guest, ok, refused, type Guest } from './fixture';
import { ATTACH_BYPASS, MAP_MMIO, MAP_READ, MAP_WRITE, S, attachReq, mapReq, unmapReq } from './wire';

const RW = MAP_READ | MAP_WRITE;
const K = 0x1000n;
/** A guest with EP1 in domain 1 (bypass off, so nothing else translates). */
function domain1(vio = {}): Guest {
  const g = guest({ vio: { bypass: false, ...vio } });
  ok(g, attachReq({ domain: 1, endpoint: EP1 }));
  return g;
}
const map = (start: bigint, pages: bigint, phys = 0x8000_0000n, flags = RW, domain = 1) => mapReq({ domain, start, end: start + pages * K - 1n, phys, flags });

describe('virtio-iommu MAP', () => {
  test('R24 MAP: misaligned virt_start, phys_start or virt_end + 1 is RANGE', () => {
    const g = domain1();
    refused(g, mapReq({ domain: 1, start: 0x10_0800n, end: 0x10_17ffn, phys: 0x8000_0000n, flags: RW }), S.RANGE);
    refused(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0010n, flags: RW }), S.RANGE);
    refused(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0ffen, phys: 0x8000_0000n, flags: RW }), S.RANGE);
    // A coarser granule: 64 KiB.
    const g64 = domain1({ pageSizeMask: 0x10000n });
    refused(g64, map(0x10_1000n, 16n), S.RANGE);
    refused(g64, map(0x10_0000n, 1n), S.RANGE);
    ok(g64, map(0x10_0000n, 16n));
  });

  test('R25 MAP: overlapping an existing mapping is INVAL, the first mapping intact', () => {
    const g = domain1();
    ok(g, map(0x10_0000n, 4n, 0x8000_0000n));
    refused(g, map(0x10_3000n, 2n, 0x8001_0000n), S.INVAL);
    refused(g, map(0x0f_f000n, 2n, 0x8001_0000n), S.INVAL);
    refused(g, map(0x0f_0000n, 0x100n, 0x8001_0000n), S.INVAL);
    expect(g.translate(EP1, 0x10_3000n).phys).toBe(0x8000_3000n);
    ok(g, map(0x10_4000n, 1n, 0x8001_0000n)); // adjacent is no overlap
  });

  test('R26 MAP: an unknown flag bit is INVAL', () => {
    const g = domain1();
    for (const flags of [8, 0x10 | RW, 0x8000_0000]) refused(g, map(0x10_0000n, 1n, 0x8000_0000n, flags), S.INVAL);
  });

  test('R27 MAP: an absent domain is NOENT', () => {
    const g = domain1();
    refused(g, map(0x10_0000n, 1n, 0x8000_0000n, RW, 2), S.NOENT);
  });

  test('R28 MAP: a bypass domain is INVAL', () => {
    const g = guest();
    ok(g, attachReq({ domain: 3, endpoint: EP1, flags: ATTACH_BYPASS }));
    refused(g, map(0x10_0000n, 1n, 0x8000_0000n, RW, 3), S.INVAL);
  });

  test('R29 MAP: no writes through a mapping without WRITE (and no reads without READ)', () => {
    const g = domain1();
    ok(g, map(0x10_0000n, 1n, 0x8000_0000n, MAP_READ));
    ok(g, map(0x20_0000n, 1n, 0x8000_1000n, MAP_WRITE));
    ok(g, map(0x30_0000n, 1n, 0x8000_2000n, 0));
    expect(g.translate(EP1, 0x10_0000n, Access.Read).ok).toBe(true);
    expect(g.translate(EP1, 0x10_0000n, Access.Write).reason).toBe('permission');
    expect(g.iommu.dmaWrite(EP1, 0, 0x10_0000n, new Uint8Array(4)).bytes).toBe(0);
    expect(g.translate(EP1, 0x20_0000n, Access.Write).phys).toBe(0x8000_1000n);
    expect(g.translate(EP1, 0x20_0000n, Access.Read).ok).toBe(false);
    expect(g.translate(EP1, 0x30_0000n, Access.Read).ok).toBe(false); // flags 0: a mapping that allows nothing
    refused(g, map(0x30_0000n, 1n, 0x8000_2000n, RW), S.INVAL); // ... but it exists
  });

  test('MAP: outside input_range is RANGE', () => {
    const g = domain1({ inputRange: { start: 0x10_0000n, end: 0xffff_ffffn } });
    refused(g, map(0x0f_f000n, 1n), S.RANGE);
    refused(g, map(0xffff_f000n, 2n), S.RANGE);
    ok(g, map(0xffff_f000n, 1n));
  });

  test('MAP: virt_end below virt_start is INVAL; phys_end past 2^64 is RANGE', () => {
    const g = domain1();
    refused(g, mapReq({ domain: 1, start: 0x20_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: RW }), S.INVAL);
    refused(g, map(0x10_0000n, 2n, 0xffff_ffff_ffff_f000n), S.RANGE);
  });

  test('MAP: MMIO without the MMIO feature is INVAL', () => {
    const g = guest({ vio: { bypass: false }, ack: (1n << 32n) | 4n });
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    refused(g, map(0x10_0000n, 1n, 0xfed0_0000n, MAP_WRITE | MAP_MMIO), S.INVAL);
  });

  test('L5 MAP: WRITE | MMIO (no READ) succeeds once MMIO is negotiated, outside RAM too', () => {
    const g = domain1();
    ok(g, map(0x800_0000n, 1n, 0xfed0_0000n, MAP_WRITE | MAP_MMIO));
    expect(g.translate(EP1, 0x800_0040n, Access.Write).phys).toBe(0xfed0_0040n);
  });

  test('L7 MAP: huge identity MAPs like Linux sends without BYPASS_CONFIG are accepted', () => {
    const g = domain1();
    ok(g, mapReq({ domain: 1, start: 0n, end: 0xfedf_ffffn, phys: 0n, flags: RW }));
    ok(g, mapReq({ domain: 1, start: 0xfef0_0000n, end: (1n << 39n) - 1n, phys: 0xfef0_0000n, flags: RW }));
    expect(g.translate(EP1, 0x8000_0123n).phys).toBe(0x8000_0123n);
    expect(g.translate(EP1, 0x12_3456_7000n).phys).toBe(0x12_3456_7000n);
  });

  test('L8 MAP: a buffer spanning two adjacent, physically contiguous mappings translates', () => {
    const g = domain1();
    ok(g, map(0x10_0000n, 1n, 0x8000_0000n));
    ok(g, map(0x10_1000n, 1n, 0x8000_1000n));
    const data = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
    expect(g.iommu.dmaWrite(EP1, 0, 0x10_0fe0n, data).bytes).toBe(64);
    expect([...g.iommu.ram.subarray(0xfe0, 0x1020)]).toEqual([...data]);
  });

  test('R46 MAP: over a reserved region of an endpoint in the domain is INVAL (MSI and RESERVED)', () => {
    const g = guest();
    ok(g, attachReq({ domain: 1, endpoint: EP2 }));
    refused(g, map(MSI.start, 1n, MSI.start, MAP_WRITE | MAP_MMIO), S.INVAL);
    refused(g, map(RESERVED2.start - K, 2n), S.INVAL);
    refused(g, mapReq({ domain: 1, start: 0n, end: 0xffff_ffffn, phys: 0n, flags: RW }), S.INVAL);
    ok(g, map(RESERVED2.last + 1n, 1n));
  });
});

describe('virtio-iommu UNMAP', () => {
  test('R30 UNMAP: reserved is ignored (the documented choice): the range is unmapped', () => {
    const g = domain1();
    ok(g, map(0x10_0000n, 1n));
    expect(g.status(unmapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, reserved: 0xffffffff }))).toBe(S.OK);
    expect(g.translate(EP1, 0x10_0000n).ok).toBe(false);
  });

  test('R31 UNMAP: an absent domain is NOENT', () => {
    const g = domain1();
    ok(g, map(0x10_0000n, 1n));
    refused(g, unmapReq({ domain: 2, start: 0x10_0000n, end: 0x10_0fffn }), S.NOENT);
  });

  test('R32 UNMAP: a bypass domain is INVAL', () => {
    const g = guest();
    ok(g, attachReq({ domain: 3, endpoint: EP2, flags: ATTACH_BYPASS }));
    refused(g, unmapReq({ domain: 3, start: 0n, end: 0xfffn }), S.INVAL);
  });

  test('R33 UNMAP: splitting a mapping is RANGE and removes nothing (spec example 4, also with a covered lower mapping)', () => {
    const g = domain1();
    ok(g, map(0n, 10n)); // a = [0, 9] in pages
    refused(g, unmapReq({ domain: 1, start: 0n, end: 5n * K - 1n }), S.RANGE); // example 4
    refused(g, unmapReq({ domain: 1, start: K, end: 10n * K - 1n }), S.RANGE);
    refused(g, unmapReq({ domain: 1, start: 0n, end: 10n * K - 2n }), S.RANGE); // a byte short
    refused(g, unmapReq({ domain: 1, start: 1n, end: 10n * K - 1n }), S.RANGE); // a byte late
    ok(g, map(0x10_0000n, 1n, 0x8001_0000n)); // b, wholly inside the next UNMAP ...
    ok(g, map(0x20_0000n, 4n, 0x8002_0000n)); // ... which would split c
    refused(g, unmapReq({ domain: 1, start: 0x10_0000n, end: 0x20_1fffn }), S.RANGE);
    expect(g.translate(EP1, 0x10_0000n).ok).toBe(true);
  });

  test('R34 UNMAP: holes and unmapped ranges are fine, covered mappings removed (spec examples 1, 2, 3, 5, 6, 7)', () => {
    const examples: { maps: [bigint, bigint][]; unmap: [bigint, bigint]; removed: bigint[]; kept: bigint[] }[] = [
      { maps: [], unmap: [0n, 4n], removed: [], kept: [] },
      { maps: [[0n, 9n]], unmap: [0n, 9n], removed: [0n], kept: [] },
      { maps: [[0n, 4n], [5n, 9n]], unmap: [0n, 9n], removed: [0n, 5n], kept: [] },
      { maps: [[0n, 4n], [5n, 9n]], unmap: [0n, 4n], removed: [0n], kept: [5n] },
      { maps: [[0n, 4n]], unmap: [0n, 9n], removed: [0n], kept: [] },
      { maps: [[0n, 4n], [10n, 14n]], unmap: [0n, 14n], removed: [0n, 10n], kept: [] },
    ];
    for (const ex of examples) {
      const g = domain1();
      // The spec's examples count in units; here a unit is a 4 KiB page.
      for (const [a, b] of ex.maps) ok(g, map(a * K, b - a + 1n, 0x8000_0000n + a * K));
      expect(g.status(unmapReq({ domain: 1, start: ex.unmap[0] * K, end: ex.unmap[1] * K + K - 1n }))).toBe(S.OK);
      for (const at of ex.removed) expect(g.translate(EP1, at * K).ok).toBe(false);
      for (const at of ex.kept) expect(g.translate(EP1, at * K).phys).toBe(0x8000_0000n + at * K);
      expect(g.vio.state().domains[0]!.mappings.map((m) => m.start)).toEqual(ex.kept.map((p) => p * K));
    }
  });

  test('UNMAP: a range that is not page aligned still removes what lies wholly inside', () => {
    const g = domain1();
    ok(g, map(0x10_0000n, 1n));
    expect(g.status(unmapReq({ domain: 1, start: 0x0f_ff01n, end: 0x10_1010n }))).toBe(S.OK);
    expect(g.vio.state().domains[0]!.mappings).toEqual([]);
  });

  test('UNMAP: a mapping without permissions (only in the index) is removed too; outside input_range is RANGE', () => {
    const g = domain1({ inputRange: { start: 0n, end: 0xffff_ffffn } });
    ok(g, map(0x10_0000n, 1n, 0x8000_0000n, 0));
    ok(g, unmapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn }));
    ok(g, map(0x10_0000n, 1n, 0x8000_0000n, RW));
    refused(g, unmapReq({ domain: 1, start: 0n, end: 0x1_0000_0000n }), S.RANGE);
    refused(g, unmapReq({ domain: 1, start: 0x10_1000n, end: 0x10_0000n }), S.INVAL);
  });
});
