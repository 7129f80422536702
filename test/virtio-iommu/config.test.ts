// Conformance, features and configuration space (VIRTIO 1.2 §5.13.3-4): R1-R5 and L6 of the
// README's coverage table.
import { describe, expect, test } from 'vitest';
import { IommuError, VirtioIommu } from '../../src/index';
import { EP1, bit, guest, ok } from './fixture';
import { F, attachReq, cfg, mapReq } from './wire';

describe('virtio-iommu features and configuration', () => {
  test('R1 features: MAP_UNMAP is offered (with VERSION_1, which Linux requires)', () => {
    const { vio } = guest();
    expect(vio.deviceFeatures & bit(F.MAP_UNMAP)).toBe(bit(F.MAP_UNMAP));
    expect(vio.deviceFeatures & bit(F.VERSION_1)).toBe(bit(F.VERSION_1));
  });

  test('R2 features: legacy BYPASS is not offered, BYPASS_CONFIG is', () => {
    const { vio } = guest();
    expect(vio.deviceFeatures & bit(F.BYPASS)).toBe(0n);
    expect(vio.deviceFeatures & bit(F.BYPASS_CONFIG)).toBe(bit(F.BYPASS_CONFIG));
  });

  test('features: PROBE only with a probe size, DOMAIN_RANGE only with a domain range; ackFeatures keeps offered bits only', () => {
    const plain = guest({ ack: 'none' }).vio;
    expect(plain.deviceFeatures & bit(F.PROBE)).toBe(bit(F.PROBE));
    expect(plain.deviceFeatures & bit(F.DOMAIN_RANGE)).toBe(0n);
    expect(guest({ vio: { probeSize: 0 } }).vio.deviceFeatures & bit(F.PROBE)).toBe(0n);
    expect(guest({ vio: { domainRange: { start: 1, end: 9 } } }).vio.deviceFeatures & bit(F.DOMAIN_RANGE)).toBe(bit(F.DOMAIN_RANGE));
    expect(plain.ackFeatures(bit(F.MAP_UNMAP) | bit(F.BYPASS) | bit(40))).toBe(bit(F.MAP_UNMAP));
    expect(plain.driverFeatures).toBe(bit(F.MAP_UNMAP));
    expect(() => plain.ackFeatures(5 as never)).toThrow(IommuError);
  });

  test('R3 config: page_size_mask is not zero and its granule is at most 4 KiB (L6)', () => {
    const { vio } = guest();
    const mask = cfg.pageSizeMask(vio.config);
    expect(mask).not.toBe(0n);
    expect(mask & -mask).toBe(0x1000n);
    expect(vio.config.length).toBe(40);
  });

  test('config: the layout holds the options at the spec offsets, little-endian', () => {
    const { vio } = guest({ vio: { pageSizeMask: 0x40201000n, inputRange: { start: 0x1000n, end: 0xff_ffffn }, domainRange: { start: 3, end: 70000 }, probeSize: 96, bypass: false } });
    const c = vio.config;
    expect(cfg.pageSizeMask(c)).toBe(0x40201000n);
    expect(cfg.inputStart(c)).toBe(0x1000n);
    expect(cfg.inputEnd(c)).toBe(0xff_ffffn);
    expect(cfg.domainStart(c)).toBe(3);
    expect(cfg.domainEnd(c)).toBe(70000);
    expect(cfg.probeSize(c)).toBe(96);
    expect(cfg.bypass(c)).toBe(0);
    expect([...c.subarray(37, 40)]).toEqual([0, 0, 0]);
    expect(c[0]).toBe(0x00);
    expect(c[1]).toBe(0x10); // 0x40201000, least significant byte first
  });

  test('config: the default input range is the engine address width', () => {
    const { vio } = guest();
    expect(cfg.inputStart(vio.config)).toBe(0n);
    expect(cfg.inputEnd(vio.config)).toBe((1n << 39n) - 1n);
  });

  test('config: bad options are IommuErrors (granule below 4 KiB, range beyond the engine, unknown key)', () => {
    const { iommu } = guest();
    expect(() => new VirtioIommu(iommu, { pageSizeMask: 0x800 })).toThrow(/EINVAL/);
    expect(() => new VirtioIommu(iommu, { pageSizeMask: 0 })).toThrow(/EINVAL/);
    expect(() => new VirtioIommu(iommu, { inputRange: { start: 0, end: 1n << 40n } })).toThrow(/EINVAL/);
    expect(() => new VirtioIommu(iommu, { inputRange: { start: 0x800, end: 0xffff } })).toThrow(/EINVAL/);
    expect(() => new VirtioIommu(iommu, { domainRange: { start: 5, end: 4 } })).toThrow(/EINVAL/);
    expect(() => new VirtioIommu(iommu, { colour: 'red' } as never)).toThrow(/EOPNOTSUPP/);
  });

  test('R4 config: bypass starts at the initial value, survives a device reset and returns to it on a system reset', () => {
    const g = guest();
    expect(cfg.bypass(g.vio.config)).toBe(1);
    expect(g.translate(EP1, 0x8000_0000n).phys).toBe(0x8000_0000n); // identity while unattached
    g.vio.writeConfig(0x24, Uint8Array.of(0));
    expect(cfg.bypass(g.vio.config)).toBe(0);
    expect(g.translate(EP1, 0x8000_0000n).ok).toBe(false);
    g.vio.reset();
    expect(cfg.bypass(g.vio.config)).toBe(0);
    expect(g.translate(EP1, 0x8000_0000n).ok).toBe(false);
    g.vio.reset({ system: true });
    expect(cfg.bypass(g.vio.config)).toBe(1);
    expect(g.translate(EP1, 0x8000_0000n).phys).toBe(0x8000_0000n);
  });

  test('R5 config: bypass shows only 0 or 1 (a write of 0xff stores bit 0)', () => {
    const g = guest({ vio: { bypass: false } });
    g.vio.writeConfig(0x20, Uint8Array.of(0, 0, 0, 0, 0xff));
    expect(cfg.bypass(g.vio.config)).toBe(1);
    g.vio.writeConfig(0x24, Uint8Array.of(0xfe));
    expect(cfg.bypass(g.vio.config)).toBe(0);
  });

  test('config: writes outside bypass, or before BYPASS_CONFIG is negotiated, are ignored', () => {
    const g = guest({ ack: 'none' });
    const before = [...g.vio.config];
    g.vio.writeConfig(0x24, Uint8Array.of(0));
    g.vio.writeConfig(0, new Uint8Array(40));
    expect([...g.vio.config]).toEqual(before);
    g.vio.ackFeatures(g.vio.deviceFeatures);
    g.vio.writeConfig(0, new Uint8Array(36).fill(0xaa));
    expect([...g.vio.config]).toEqual(before);
  });

  test('L6 config: page_size_mask and input_range do not change while the device works', () => {
    const g = guest();
    const before = [...g.vio.config.subarray(0, 0x24)];
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: 3 }));
    g.vio.reset();
    expect([...g.vio.config.subarray(0, 0x24)]).toEqual(before);
  });
});

describe('virtio-iommu bypass on wide engines', () => {
  test('bypass on a 57-bit engine reaches addresses below 2^48 1:1 and stays small', () => {
    const g = guest({ iommu: { addressWidth: 57 } });
    expect(cfg.inputEnd(g.vio.config)).toBe((1n << 57n) - 1n);
    expect(g.translate(EP1, 0xffff_ffff_f000n).phys).toBe(0xffff_ffff_f000n);
    expect(g.translate(EP1, 1n << 48n).ok).toBe(false);
    expect(g.iommu.stats().memoryBytes).toBeLessThan(16 * 2 ** 20);
  });
});
