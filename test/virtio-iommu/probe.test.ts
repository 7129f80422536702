// Conformance, PROBE and RESV_MEM (VIRTIO 1.2 §5.13.6.8): R35-R45 and R47 of the README's
// coverage table. Properties are decoded by the test-side walker (wire.ts), as Linux walks them.
import { describe, expect, test } from 'vitest';
import { Access } from '../../src/index';
import { EP1, EP2, MSI, RESERVED2, guest, ok, refused } from './fixture';
import { S, attachReq, cfg, parseProperties, probeReq } from './wire';

describe('virtio-iommu PROBE', () => {
  test('R35 PROBE: reserved is ignored', () => {
    const g = guest();
    expect(g.send(probeReq({ endpoint: EP1, reservedFill: 0xa5 })).status).toBe(S.OK);
  });

  test('R36 PROBE: an unknown endpoint is NOENT', () => {
    const g = guest();
    refused(g, probeReq({ endpoint: 0x99 }), S.NOENT);
  });

  test('R37 PROBE: without the PROBE feature (probe_size 0) there is no answer', () => {
    const g = guest({ vio: { probeSize: 0 } });
    const { used, w } = g.send(probeReq({ endpoint: EP1 }), 68);
    expect(used).toBe(0);
    expect(w.every((b) => b === 0xff)).toBe(true);
  });

  test('R38 PROBE: property reserved bits (12-15 of the type) are zero', () => {
    const g = guest();
    const props = parseProperties(g.send(probeReq({ endpoint: EP2 })).w, cfg.probeSize(g.vio.config));
    expect(props.length).toBe(2);
    for (const p of props) expect(p.reservedBits).toBe(0);
  });

  test('R39 PROBE: the length field excludes the header (RESV_MEM length 20)', () => {
    const g = guest();
    const props = parseProperties(g.send(probeReq({ endpoint: EP1 })).w, cfg.probeSize(g.vio.config));
    expect(props).toEqual([expect.objectContaining({ type: 1, length: 20 })]);
  });

  test('R40 PROBE: properties are back to back (the second at +24)', () => {
    const g = guest();
    const props = parseProperties(g.send(probeReq({ endpoint: EP2 })).w, cfg.probeSize(g.vio.config));
    expect(props.map((p) => p.offset)).toEqual([0, 24]);
    expect(props.map((p) => [p.subtype, p.start, p.end])).toEqual([
      [0, RESERVED2.start, RESERVED2.last],
      [1, MSI.start, MSI.end],
    ]);
  });

  test('R41 PROBE: a properties area shorter than probe_size gets no property and INVAL', () => {
    const g = guest();
    const size = cfg.probeSize(g.vio.config);
    const { used, w } = g.send(probeReq({ endpoint: EP1 }), size); // 4 bytes short
    expect(used).toBe(size);
    expect(w[size - 4]).toBe(S.INVAL);
    expect(w.subarray(0, size - 4).every((b) => b === 0xff)).toBe(true);
  });

  test('R42 PROBE: unused property bytes are zeroed; the tail sits at probe_size', () => {
    const g = guest({ vio: { probeSize: 64 } });
    const { used, w } = g.send(probeReq({ endpoint: EP1 }), 80);
    expect(used).toBe(68);
    expect(w.subarray(24, 64).every((b) => b === 0)).toBe(true);
    expect([...w.subarray(64, 68)]).toEqual([S.OK, 0, 0, 0]);
    expect(w.subarray(68).every((b) => b === 0xff)).toBe(true);
  });

  test('PROBE: properties that do not fit probe_size are left out whole', () => {
    const g = guest({ vio: { probeSize: 30 } });
    const { w } = g.send(probeReq({ endpoint: EP2 }));
    expect(parseProperties(w, 30)).toHaveLength(1);
    expect(w.subarray(24, 30).every((b) => b === 0)).toBe(true);
  });
});

describe('virtio-iommu RESV_MEM', () => {
  const devices = [
    { bdf: '00:01.0' },
    // Overlapping regions, one of them running into the MSI window.
    { bdf: '00:02.0', reservedRegions: [{ start: 0x4000_0000n, last: 0x4000_ffffn }, { start: 0x4000_8000n, last: 0x4001_ffffn }, { start: 0xfe00_0000n, last: 0xfee0_0fffn }] },
  ];

  test('R43 RESV_MEM: reserved bytes are zero', () => {
    const g = guest({ devices });
    for (const p of parseProperties(g.send(probeReq({ endpoint: EP2 })).w, cfg.probeSize(g.vio.config))) expect(p.reserved).toBe(0n);
  });

  test('R44 RESV_MEM: at most one MSI region per endpoint', () => {
    const g = guest({ devices });
    const props = parseProperties(g.send(probeReq({ endpoint: EP2 })).w, cfg.probeSize(g.vio.config));
    expect(props.filter((p) => p.subtype === 1)).toHaveLength(1);
    expect(parseProperties(guest({ vio: { msiRegion: null } }).send(probeReq({ endpoint: EP1 })).w, 512)).toEqual([]);
  });

  test('R45 RESV_MEM: no two regions of one endpoint overlap (device regions merged, MSI window cut out)', () => {
    const g = guest({ devices });
    const props = parseProperties(g.send(probeReq({ endpoint: EP2 })).w, cfg.probeSize(g.vio.config));
    for (let i = 0; i < props.length; i++) for (let j = i + 1; j < props.length; j++) expect(props[i]!.end! < props[j]!.start! || props[j]!.end! < props[i]!.start!).toBe(true);
    expect(props.map((p) => [p.subtype, p.start, p.end])).toEqual([
      [0, 0x4000_0000n, 0x4001_ffffn],
      [0, 0xfe00_0000n, MSI.start - 1n],
      [1, MSI.start, MSI.end],
    ]);
  });

  test('R47 RESV_MEM: an MSI-region write goes to the doorbell (no fault report); a RESERVED-region access faults', () => {
    const g = guest({ vio: { bypass: false } });
    ok(g, attachReq({ domain: 1, endpoint: EP2 }));
    expect(g.translate(EP2, MSI.start + 0x40n, Access.Write).ok).toBe(false); // not memory
    expect(g.vio.pendingEvents).toBe(0); // the emulator's interrupt path, not a DMA fault
    expect(g.translate(EP2, RESERVED2.start, Access.Read).ok).toBe(false);
    expect(g.vio.pendingEvents).toBe(1);
  });
});
