// Engine failures inside a request (the fail_nth pattern of test/fault-injection.test.ts): the
// Nth fallible engine step of ATTACH, MAP, UNMAP and DETACH fails with ENOMEM, for N = 1, 2, …
// until the request succeeds. Each failed run must answer NOMEM and leave the device state and
// every probed translation exactly as they were.
import { describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../../src/index';
import { setFailCountdown } from '../testing';
import { EP1, EP2, type Guest, guest, ok } from './fixture';
import { ATTACH_BYPASS, S, attachReq, detachReq, mapReq, unmapReq } from './wire';

const PROBES = [0x10_0000n, 0x20_0000n, 0x20_1000n, 0x8000_0000n, 0x8000_1000n];

function observe(g: Guest): unknown {
  const tr = [EP1, EP2].flatMap((ep) => PROBES.map((iova) => {
    const t = g.iommu.translate(ep, NO_PASID, iova, Access.Write);
    return t.ok ? t.phys : t.fault?.reason;
  }));
  return { state: g.vio.state(), tr };
}

/** Sends `req` with its 1st, 2nd, … engine step failing until it answers OK. @returns the failure points met. */
function failEachStep(g: Guest, req: Uint8Array): number {
  for (let n = 1; n < 200; n++) {
    const before = observe(g);
    setFailCountdown(g.iommu, n);
    const status = g.status(req);
    setFailCountdown(g.iommu, 0);
    if (status === S.OK) return n - 1;
    expect(status, `failure point ${n}`).toBe(S.NOMEM);
    expect(observe(g), `state changed by the failure at step ${n}`).toEqual(before);
  }
  return expect.fail('the request never succeeded');
}

describe('virtio-iommu under engine failures', () => {
  test('ATTACH to a new domain, moving between domains, to a bypass domain', () => {
    const g = guest({ vio: { bypass: false } });
    expect(failEachStep(g, attachReq({ domain: 1, endpoint: EP1 }))).toBeGreaterThan(0);
    ok(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: 3 }));
    ok(g, attachReq({ domain: 2, endpoint: EP2 }));
    ok(g, mapReq({ domain: 2, start: 0x20_0000n, end: 0x20_1fffn, phys: 0x8000_1000n, flags: 3 }));
    failEachStep(g, attachReq({ domain: 2, endpoint: EP1 })); // the existing HWPT: nothing to allocate
    expect(g.vio.state().domains.map((d) => d.id)).toEqual([2]);
    expect(failEachStep(g, attachReq({ domain: 3, endpoint: EP2, flags: ATTACH_BYPASS }))).toBeGreaterThan(0);
    expect(g.translate(EP2, 0x8000_1000n, Access.Write).phys).toBe(0x8000_1000n);
  });

  test('MAP and UNMAP', () => {
    const g = guest({ vio: { bypass: false } });
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    expect(failEachStep(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: 3 }))).toBeGreaterThan(0);
    failEachStep(g, mapReq({ domain: 1, start: 0x20_0000n, end: 0x20_1fffn, phys: 0x8000_1000n, flags: 3 }));
    failEachStep(g, unmapReq({ domain: 1, start: 0n, end: 0xff_ffffn }));
    expect(g.vio.state().domains[0]!.mappings).toEqual([]);
    expect(g.translate(EP1, 0x10_0000n).ok).toBe(false);
  });

  test('DETACH into bypass: without room for an identity space the endpoint is blocked, never more', () => {
    const g = guest({ vio: { bypass: false } });
    ok(g, attachReq({ domain: 1, endpoint: EP1 }));
    ok(g, mapReq({ domain: 1, start: 0x10_0000n, end: 0x10_0fffn, phys: 0x8000_0000n, flags: 3 }));
    g.vio.writeConfig(0x24, Uint8Array.of(1)); // EP2 (other reserved regions) gets its identity space
    expect(g.translate(EP2, 0x8000_0000n).phys).toBe(0x8000_0000n);
    setFailCountdown(g.iommu, 1); // EP1's identity space cannot be made
    expect(g.status(detachReq({ domain: 1, endpoint: EP1 }))).toBe(S.OK);
    setFailCountdown(g.iommu, 0);
    expect(g.translate(EP1, 0x10_0000n).reason).toBe('not-attached');
    expect(g.translate(EP1, 0x8000_0000n).reason).toBe('not-attached');
    expect(g.vio.state().domains).toEqual([]);
  });
});
