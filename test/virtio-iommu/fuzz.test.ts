// Bad input never hurts: thousands of requests from a fixed seed — plausible ones with fields drawn
// from small pools (so that they collide), the same with reserved fields set, truncated or
// oversized, and plain random bytes — through handleRequest. Every call must return a legal used
// length without throwing; a request answered with anything but OK (or not answered) must leave
// the device state and the probed translations unchanged; and after every request the engine must
// translate exactly what the device state says (mappings for attached endpoints, identity or a
// block for the others).
import { describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../../src/index';
import { Rng } from '../model/rng';
import { EP1, EP2, type Guest, guest } from './fixture';
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

/** The engine translates what the device state says, for every endpoint. */
function checkConsistent(g: Guest): void {
  const s = g.vio.state();
  for (const d of s.domains) {
    for (const ep of d.endpoints) {
      for (const m of d.mappings.slice(0, 4)) {
        const r = g.iommu.translate(ep, NO_PASID, m.start, Access.Read);
        const w = g.iommu.translate(ep, NO_PASID, m.end, Access.Write);
        if (d.bypass) throw new Error('a bypass domain holds mappings');
        expect(r.ok).toBe((m.flags & 1) !== 0);
        if (r.ok) expect(r.phys).toBe(m.phys);
        expect(w.ok).toBe((m.flags & 2) !== 0);
        if (w.ok) expect(w.phys).toBe(m.phys + (m.end - m.start));
      }
      if (d.bypass) expect(g.iommu.translate(ep, NO_PASID, 0x8000_1234n, Access.Write).phys).toBe(0x8000_1234n);
    }
  }
  for (const ep of ENDPOINTS) {
    if (s.endpoints[ep] !== null) continue;
    const t = g.iommu.translate(ep, NO_PASID, 0x8000_1234n, Access.Write);
    if (s.bypass) expect(t.phys).toBe(0x8000_1234n);
    else expect(t.fault?.reason).toBe('not-attached');
  }
}

describe('virtio-iommu fuzz', () => {
  test(`seed ${SEED.toString(16)}: ${STEPS} good, mangled and random requests never throw, refusals change nothing`, () => {
    const rng = new Rng(SEED);
    const g = guest({ devices: [{ bdf: '00:01.0' }, { bdf: '00:02.0', reservedRegions: [{ start: 0x4000_0000n, last: 0x400f_ffffn }] }, { bdf: '00:03.0' }] });
    const probeSize = cfg.probeSize(g.vio.config);
    const seen = { ok: 0, refused: 0, silent: 0 };
    for (let step = 0; step < STEPS; step++) {
      if (step % 500 === 250) g.vio.writeConfig(0x24, Uint8Array.of(rng.int(2)));
      const r = mangle(rng, request(rng));
      const wlen = rng.pick([0, 2, 4, 4, 4, 8, probeSize, probeSize + 4, probeSize + 4, probeSize + 9]);
      const w = new Uint8Array(wlen).fill(0xa5);
      const before = g.vio.state();
      const beforeTr = translations(g);
      const used = g.vio.handleRequest(r, w);
      const legal = [0, 4, probeSize + 4];
      if (r[0] === 5 && wlen >= 4 && wlen < probeSize + 4) legal.push(wlen);
      expect(legal, `step ${step}`).toContain(used);
      const status = used === 0 ? -1 : w[used - 4]!;
      if (used > 0) expect([...w.subarray(used - 3, used)]).toEqual([0, 0, 0]);
      if (used === 0) expect(w.every((b) => b === 0xa5), `step ${step}: unanswered but written`).toBe(true);
      if (status !== 0) {
        expect(g.vio.state(), `step ${step}: refused (${status}) but changed`).toEqual(before);
        expect(translations(g)).toEqual(beforeTr);
      }
      seen[status === 0 ? 'ok' : used === 0 ? 'silent' : 'refused']++;
      if (step % 10 === 0) checkConsistent(g);
    }
    checkConsistent(g);
    // The generator reaches every outcome often enough to mean something.
    expect(seen.ok).toBeGreaterThan(STEPS / 10);
    expect(seen.refused).toBeGreaterThan(STEPS / 10);
    expect(seen.silent).toBeGreaterThan(STEPS / 50);
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
