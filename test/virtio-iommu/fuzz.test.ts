// Bad input never hurts: thousands of requests from a fixed seed — plausible ones with fields drawn
// from small pools (so that they collide), the same with reserved fields set, truncated or
// oversized, and plain random bytes — through handleRequest, and through a deliberately simple
// reference device (reference.ts) beside it. Every call must return without throwing, with the
// reference's used length and status; a request answered with anything but OK (or not answered)
// must leave the device state and the probed translations unchanged; after every request the state
// must equal the reference's, and the engine must translate the probed IOVAs of every endpoint as
// the reference says (mappings, identity, or a fault).
import { describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../../src/index';
import { Rng } from '../model/rng';
import { EP1, EP2, MSI, RESERVED2, type Guest, guest } from './fixture';
import { ReferenceIommu } from './reference';
import { attachReq, cfg, detachReq, mapReq, probeReq, put, unmapReq } from './wire';

const EP3 = 0x18;
const SEED = 0x5eed_13;
const STEPS = 3000;
const K = 0x1000n;
const K_NUM = 0x1000;

function request(rng: Rng): Uint8Array {
  const domain = rng.pick([0, 1, 2, 3, 0xffffffff]);
  const endpoint = rng.pick([EP1, EP2, EP3, EP3, 0x99, 0x1_0008]);
  const page = BigInt(rng.pick([0, 1, 2, 3, 4, 8, 0x40000, 0x40001, 0xfee00, 0x7ffffff]));
  const pages = BigInt(rng.pick([1, 1, 2, 3, 16]));
  let start = page * K;
  let end = start + pages * K - 1n;
  if (rng.chance(0.1)) start += BigInt(rng.int(K_NUM));
  if (rng.chance(0.1)) end -= BigInt(rng.int(K_NUM));
  const phys = 0x8000_0000n + BigInt(rng.int(64)) * K + (rng.chance(0.05) ? 8n : 0n);
  switch (rng.int(5)) {
    case 0:
      return attachReq({ domain, endpoint, flags: rng.chance(0.8) ? 0 : rng.pick([1, 2, 0x100]), reserved: rng.chance(0.9) ? 0 : 1 });
    case 1:
      return detachReq({ domain, endpoint, reserved: rng.chance(0.8) ? 0n : rng.bits(64) });
    case 2:
      return mapReq({ domain, start, end, phys, flags: rng.chance(0.85) ? rng.pick([1, 2, 3, 3, 3, 0, 6]) : rng.int(256) });
    case 3:
      return unmapReq({ domain, start: rng.chance(0.1) ? end : start, end: rng.chance(0.1) ? start : end, reserved: rng.chance(0.9) ? 0 : 7 });
    default:
      return probeReq({ endpoint, reservedFill: rng.chance(0.5) ? 0 : 0x5a });
  }
}

function mangle(rng: Rng, r: Uint8Array): Uint8Array {
  const roll = rng.int(10);
  if (roll === 0) return r.subarray(0, rng.int(r.length)); // truncated
  if (roll === 1) return Uint8Array.from([...r, ...Array.from({ length: rng.int(40) }, () => rng.int(256))]); // oversized
  if (roll === 2) put(r, 1, 3, rng.u32()); // head.reserved
  if (roll === 3) r[0] = rng.int(256); // any type
  if (roll === 4) return Uint8Array.from({ length: rng.int(90) }, () => rng.int(256)); // random bytes
  if (roll === 5) r[rng.int(r.length)] ^= 1 << rng.int(8); // one flipped bit
  return r;
}

const PROBES = [0n, K, 2n * K, 4n * K, 8n * K, 0x4000_0000n, 0xfee0_0000n, 0x8000_0000n, 0x8000_1000n];
const ENDPOINTS = [EP1, EP2, EP3];

function translations(g: Guest): unknown[] {
  return ENDPOINTS.flatMap((ep) => PROBES.flatMap((iova) => [Access.Read, Access.Write].map((a) => {
    const t = g.iommu.translate(ep, NO_PASID, iova, a);
    return t.ok ? t.phys : t.fault?.reason;
  })));
}

/** The device state and the engine's translations equal the reference's. */
function checkAgainst(g: Guest, ref: ReferenceIommu, step: number): void {
  const { driverFeatures: _, ...state } = g.vio.state();
  expect(state, `step ${step}: state`).toEqual(ref.state());
  for (const ep of ENDPOINTS) {
    for (const iova of PROBES) {
      for (const write of [false, true]) {
        const t = g.iommu.translate(ep, NO_PASID, iova, write ? Access.Write : Access.Read);
        expect(t.ok ? t.phys : null, `step ${step}: EP ${ep} ${write ? 'writes' : 'reads'} 0x${iova.toString(16)}`).toBe(ref.translate(ep, iova, write));
      }
    }
  }
}

describe('virtio-iommu fuzz', () => {
  test(`seed ${SEED.toString(16)}: ${STEPS} good, mangled and random requests never throw, change nothing when refused and match the reference`, () => {
    const rng = new Rng(SEED);
    const g = guest({ devices: [{ bdf: '00:01.0' }, { bdf: '00:02.0', reservedRegions: [{ start: 0x4000_0000n, last: 0x400f_ffffn }] }, { bdf: '00:03.0' }] });
    const probeSize = cfg.probeSize(g.vio.config);
    const msi = { start: MSI.start, end: MSI.end };
    const ref = new ReferenceIommu({ probeSize, inputStart: 0n, inputEnd: (1n << 39n) - 1n, granule: 0x1000n, bypass: true }, [
      [EP1, [msi]], [EP2, [{ start: RESERVED2.start, end: RESERVED2.last }, msi]], [EP3, [msi]],
    ]);
    const seen = { ok: 0, refused: 0, silent: 0 };
    const outcomes = new Set<string>();
    for (let step = 0; step < STEPS; step++) {
      if (step % 500 === 250) {
        const on = rng.int(2);
        g.vio.writeConfig(0x24, Uint8Array.of(on));
        ref.bypass = on === 1;
      }
      const r = mangle(rng, request(rng));
      const wlen = rng.pick([0, 2, 4, 4, 4, 8, probeSize, probeSize + 4, probeSize + 4, probeSize + 9]);
      const w = new Uint8Array(wlen).fill(0xa5);
      const before = g.vio.state();
      const beforeTr = translations(g);
      const used = g.vio.handleRequest(r, w);
      const status = used === 0 ? -1 : w[used - 4]!;
      expect({ used, status }, `step ${step}: answer`).toEqual(ref.request(r, wlen));
      if (used > 0) expect([...w.subarray(used - 3, used)]).toEqual([0, 0, 0]);
      if (used === 0) expect(w.every((b) => b === 0xa5), `step ${step}: unanswered but written`).toBe(true);
      if (status !== 0) {
        expect(g.vio.state(), `step ${step}: refused (${status}) but changed`).toEqual(before);
        expect(translations(g)).toEqual(beforeTr);
      }
      seen[status === 0 ? 'ok' : used === 0 ? 'silent' : 'refused']++;
      if (used > 0 && r.length > 0) outcomes.add(`${r[0]}:${status}`);
      checkAgainst(g, ref, step);
    }
    // The generator reaches every outcome often enough to mean something.
    expect(seen.ok).toBeGreaterThan(STEPS / 10);
    expect(seen.refused).toBeGreaterThan(STEPS / 10);
    expect(seen.silent).toBeGreaterThan(STEPS / 50);
    // ... and every status each request type can give (type:status).
    expect([...outcomes].sort()).toEqual(['1:0', '1:2', '1:4', '1:6', '2:0', '2:4', '2:6', '3:0', '3:4', '3:5', '3:6', '4:0', '4:4', '4:5', '4:6', '5:0', '5:4', '5:6']);
  });

  test('non-array arguments are not answered and never throw', () => {
    const g = guest();
    for (const [a, b] of [[null, null], [undefined, new Uint8Array(4)], [new Uint8Array(20), 'xx'], [[1, 0, 0, 0], [0, 0, 0, 0]], [new Uint16Array(20), new Uint8Array(4)]] as const) {
      expect(g.vio.handleRequest(a as never, b as never)).toBe(0);
    }
    expect(g.vio.nextEvent(null as never)).toBe(0);
    g.vio.writeConfig('x' as never, null as never);
  });
});
