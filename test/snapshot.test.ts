/**
 * Save and restore (issue 6, item 3): `iommu.snapshot()` and `Iommu.restore`/`restoreAsync`.
 *
 * - Round trip of a rich engine (test/snapshot-world.ts): every probe page translates identically
 *   for every device and PASID; objects, IDs, PASIDs, attachments, IOVA ranges, internals and page
 *   pool accounting are equal; a snapshot of the restored engine is byte-identical; the same script
 *   of control calls (next IDs, automatic IOVAs, next PASIDs, fault-queue reads and answers, unmaps of
 *   pinned ranges, close) gives the same results on both; the engines are independent.
 * - Refusals: flipped bytes in every section, truncation, extension, wrong magic/format/ABI, wrong
 *   types and options, well-formed but inconsistent content — all EINVAL — and a random mutation
 *   campaign in which `Iommu.restore` never throws anything but an IommuError.
 * - The demo machine (examples/vms.mjs): snapshot in the middle of worker DMA, restore, and every
 *   mapped page of every device and PASID translates as it did when the snapshot was taken.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, type DeviceFd } from '../src/index';
import { decodeSnapshot, encodeSnapshot } from '../src/snapshot/container';
import { crc32 } from '../src/snapshot/crc32';
import { checkGuards } from './testing';
import { Rng } from './reference-walk';
import { RAM, buildRich, observe, probePages, restoredWorld, translations, type Ids, type World } from './snapshot-world';

const MiB = 1n << 20n;

function rich() {
  const { world, ids } = buildRich();
  const pages = probePages([world.fdA, world.fdB], ids.stage1Pages);
  return { world, ids, pages, bytes: world.iommu.snapshot() };
}

/** Restores `bytes` as a World, with onUnmap callbacks that mirror the original's. */
function restore(bytes: Uint8Array, ids: Ids, opts: { shared?: boolean } = {}): World {
  const calls: [bigint, bigint][] = [];
  let w: World | undefined;
  const r = Iommu.restore(bytes, {
    ...opts,
    onUnmap: (fdIndex, accessId) => {
      expect([fdIndex, accessId]).toEqual([0, ids.accessId]);
      return (iova, length) => calls.push([iova, length]) && w!.access.unpin(...ids.pin);
    },
  });
  w = restoredWorld(r, ids, calls);
  return w;
}

/** Runs `fn`; an IommuError becomes its errno. */
function attempt(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (e) {
    if (e instanceof IommuError) return e.errno;
    throw e;
  }
}

/** Asserts that restoring `bytes` is refused with EINVAL (message matching `why`). */
function refused(bytes: unknown, why?: RegExp, opts?: unknown): void {
  let error: unknown;
  try {
    Iommu.restore(bytes as Uint8Array, opts as undefined);
  } catch (e) {
    error = e;
  }
  expect(error, 'restore should have refused').toBeInstanceOf(IommuError);
  const e = error as IommuError;
  expect(e.errno, e.message).toBe('EINVAL');
  expect(e.message).toMatch(/^restore: EINVAL/);
  if (why) expect(e.message).toMatch(why);
}

/** The decoded sections, for editing (JSON as plain objects). */
interface Editable {
  header: any;
  graph: any;
  image: Uint8Array<ArrayBufferLike>;
}

/** `bytes` re-assembled (with a valid checksum) after `edit` changed its decoded sections. */
function reencode(bytes: Uint8Array, edit: (s: Editable) => void): Uint8Array {
  const s = decodeSnapshot(bytes) as Editable;
  const copy = { header: structuredClone(s.header), graph: structuredClone(s.graph), image: s.image.slice() };
  edit(copy);
  return encodeSnapshot(copy.header, copy.graph, [copy.image]);
}

describe('round trip', () => {
  test('a rich engine: objects, IDs, PASIDs, attachments, ranges, internals, pool, RAM and every translation', () => {
    const { world, ids, pages, bytes } = rich();
    const t0 = performance.now();
    const w = restore(bytes, ids);
    const ms = performance.now() - t0;
    console.log(`rich engine: snapshot ${bytes.length} bytes (${pages.length} probe pages), restore ${ms.toFixed(1)} ms`);
    expect(bytes.length).toBeLessThan(256 << 10);

    const before = observe(world, pages);
    expect(before.translations.filter((t) => !/ [a-z-]+$/.test(t)).length).toBeGreaterThan(3000); // translated, not faulted
    expect(observe(w, pages)).toEqual(before);
    expect(Buffer.compare(w.iommu.ram, world.iommu.ram), 'guest RAM').toBe(0);
    expect(w.iommu.memory.buffer.byteLength).toBe(world.iommu.memory.buffer.byteLength);
    checkGuards(w.iommu);

    // What the graph carries beyond fd.objects(): fault-queue contents, responses, pins, caps.
    expect(w.faultFd.poll()).toBe(world.faultFd.poll());
    expect(w.vf.pageResponses()).toEqual(world.vf.pageResponses());
    expect(w.access.pinned()).toEqual([{ start: 0x1000n, last: 0x2fffn }]);
    expect([w.lonely.devId, w.riscv.pasidBits, w.vf.pasidBits, w.vf.pri]).toEqual([undefined, 20, 8, true]);
    expect(w.fdA.ioasIovaRanges(ids.ioas).ranges).toContainEqual({ start: 0n, last: 0xfedf_ffffn }); // the NIC's reserved region
  });

  test('a snapshot of the restored engine is byte-identical; restoreAsync gives the same engine', async () => {
    const { world, ids, bytes } = rich();
    expect(restore(bytes, ids).iommu.snapshot()).toEqual(bytes);
    const r = await Iommu.restoreAsync(bytes);
    expect(r.iommu.snapshot()).toEqual(bytes);
    expect(r.fds.map((fd) => fd.objects())).toEqual([world.fdA.objects(), world.fdB.objects()]);
    await expect(Iommu.restoreAsync(bytes.subarray(0, 100))).rejects.toThrow(/restore: EINVAL \(snapshot truncated/);
  });

  test('subsequent control calls behave the same on both (next ID, auto IOVA, next PASID, fault queue, pins, close)', () => {
    const { world, ids, pages, bytes } = rich();
    const w = restore(bytes, ids);
    const script = (x: World): unknown[] => [
      attempt(() => x.fdA.ioasAlloc()),
      attempt(() => x.fdA.ioasMap(ids.ioas, { length: 0x10_0000, phys: RAM + 12n * MiB })),
      attempt(() => x.fdA.pasidAlloc()),
      attempt(() => x.fdA.pasidAlloc()),
      attempt(() => x.fdB.hwptAlloc({ devId: ids.vfId, ptId: ids.gpaIoas })),
      attempt(() => x.fdB.ioasMap(ids.gpaIoas, { length: 0x1000, phys: RAM })),
      attempt(() => [...x.fdA.hwptGetDirtyBitmap(ids.explicit, { iova: 0, length: 1n << 31n, pageSize: 0x1000 })].filter((word) => word !== 0n)),
      attempt(() => x.faultFd.poll()),
      attempt(() => x.faultFd.read()),
      attempt(() => x.faultFd.write([{ cookie: 2, code: 'success' }, { cookie: 3, code: 'invalid' }])),
      attempt(() => x.faultFd.write([{ cookie: 2, code: 'success' }])),
      attempt(() => x.vf.pageResponses()),
      attempt(() => x.fdA.ioasUnmap(ids.ioas, 0x1000, 0x3000)),
      [...x.unmapCalls],
      attempt(() => x.access.pinned()),
      attempt(() => x.fdA.destroy(ids.ioas)),
      attempt(() => x.fdA.ioasUnmap(ids.ioas, 0x20_0000, 0x10_0000)),
      attempt(() => x.nic.detach()),
      attempt(() => x.accel.attach(ids.ioas2 + 1, { pasid: 2 })),
      attempt(() => x.lonely.bind(x.fdB)),
      attempt(() => x.fdB.close()),
      attempt(() => x.fdA.objects()),
    ];
    const a = script(world);
    expect([a[0], a[2], a[3], a[5]]).toEqual([2, 1, 4, 0x100_0000n]); // the hole, the freed PASID, then the next; the allowed range
    // Dirty: pages 1 and 3, and the whole 1 GiB leaf written at 0x4000_1234 (4096 words of ones).
    expect([(a[6] as bigint[])[0], (a[6] as bigint[]).length, new Set((a[6] as bigint[]).slice(1))]).toEqual([0b1010n, 4097, new Set([2n ** 64n - 1n])]);
    expect(a[13]).toEqual([[0x1000n, 0x3000n]]);
    expect(script(w)).toEqual(a);
    expect(observe(w, pages)).toEqual(observe(world, pages));
  });

  test('the restored engine is independent of the original, both ways', () => {
    const { world, ids, pages, bytes } = rich();
    const w = restore(bytes, ids);
    const restoredBefore = observe(w, pages);
    world.fdA.ioasUnmap(ids.ioas2, 0, 2n ** 64n - 1n);
    world.accel.detach({ pasid: 3 });
    world.iommu.ram.fill(0xaa, 0, 1 << 20);
    world.fdB.close();
    expect(observe(w, pages)).toEqual(restoredBefore);
    expect(w.iommu.ram[0x12345]).toBe('g'.charCodeAt(0));

    const originalBefore = observe(world, pages);
    w.fdA.close();
    w.iommu.ram.fill(0x55);
    w.iommu.addDevice({ bdf: '09:00.0' });
    expect(observe(world, pages)).toEqual(originalBefore);
    expect(world.iommu.ram[0x12345]).toBe(0xaa);
  });

  test('options: shared false, every worker slot free, unknown options refused', () => {
    const { world, ids, bytes } = rich();
    expect(world.iommu.shared).toBe(true);
    const unshared = restore(bytes, ids, { shared: false });
    expect(unshared.iommu.shared).toBe(false);
    const again = decodeSnapshot(unshared.iommu.snapshot());
    expect([again.graph, again.image]).toEqual([decodeSnapshot(bytes).graph, decodeSnapshot(bytes).image]);
    const shared = restore(bytes, ids);
    for (let slot = 1; slot < 4; slot++) expect(shared.iommu.translatorHandle().slot).toBe(slot);
    refused(bytes, /unknown option 'share'/, { share: true });
    refused(bytes, /options.onUnmap/, { onUnmap: 7 });
    refused(bytes, /options.shared/, { shared: 'yes' });
    refused(bytes, /threw: nope/, { onUnmap: () => { throw new Error('nope'); } });
  });

  test('a pinning access restored without a callback keeps its pins: unmap is EDEADLOCK until unpinned', () => {
    const { ids, bytes } = rich();
    const r = Iommu.restore(bytes);
    const access = r.accesses[0]!.get(ids.accessId)!;
    expect(access.pinned()).toEqual([{ start: 0x1000n, last: 0x2fffn }]);
    expect(attempt(() => r.fds[0]!.ioasUnmap(ids.ioas, 0x1000, 0x3000))).toBe('EDEADLOCK');
    access.unpin(...ids.pin);
    expect(r.fds[0]!.ioasUnmap(ids.ioas, 0x1000, 0x3000)).toBe(0x3000n);
    // Alignment is kept: the access still requires whole pages.
    expect(attempt(() => r.fds[0]!.ioasMap(ids.ioas, { iova: 0x9000, length: 0x800, phys: RAM }))).toBe('EINVAL');
  });

  test('an engine without guest RAM, devices or FDs round-trips too', () => {
    const iommu = Iommu.createSync({ addressWidth: 57, pasidBits: 4, translators: 2, iotlbEntries: 2, maxDomains: 2, maxMemoryBytes: 2 << 20, shared: false });
    const bytes = iommu.snapshot();
    const r = Iommu.restore(bytes);
    expect([r.fds, [...r.devices], r.iommu.addressWidth, r.iommu.ram.length]).toEqual([[], [], 57, 0]);
    expect(r.iommu.snapshot()).toEqual(bytes);
    expect(bytes.length).toBeLessThan(32 << 10);
  });
});

describe('refusals', () => {
  const { bytes } = rich();
  const { header, graph } = decodeSnapshot(bytes);
  const headerEnd = 40 + new TextEncoder().encode(JSON.stringify(header)).length;
  const graphEnd = headerEnd + new TextEncoder().encode(JSON.stringify(graph)).length;
  const rng = new Rng(2024);

  test('a flipped byte anywhere (fixed header, header, graph, image, checksum) is EINVAL', () => {
    const positions = new Set<number>();
    for (let i = 0; i < 40; i++) positions.add(i);
    for (const [from, to] of [[40, headerEnd], [headerEnd, graphEnd], [graphEnd, bytes.length - 4], [bytes.length - 4, bytes.length]] as const) {
      for (let i = 0; i < 40; i++) positions.add(from + rng.int(to - from));
    }
    for (const at of positions) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = bytes.slice();
        bad[at]! ^= mask;
        refused(bad);
      }
    }
    expect(positions.size).toBeGreaterThan(150);
  });

  test('truncated or extended input is EINVAL', () => {
    for (const n of [0, 1, 7, 8, 39, 40, 43, 44, headerEnd, headerEnd + 5, graphEnd - 1, graphEnd + 4, graphEnd + 5000, bytes.length - 4, bytes.length - 1]) {
      refused(bytes.slice(0, n), /snapshot|not an ioasid/);
    }
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    refused(longer, /section lengths/);
  });

  test('wrong magic, format version or core ABI is EINVAL with a clear message', () => {
    /** `bytes` with the u32 at `at` replaced, the checksum recomputed or not. */
    const patched = (at: number, value: number, fixChecksum: boolean): Uint8Array => {
      const b = bytes.slice();
      const v = new DataView(b.buffer);
      v.setUint32(at, value, true);
      if (fixChecksum) v.setUint32(b.length - 4, crc32(b.subarray(0, b.length - 4)), true);
      return b;
    };
    for (const fix of [false, true]) {
      refused(patched(0, 0x1234_5678, fix), /not an ioasid snapshot \(bad magic\)/);
      refused(patched(8, 2, fix), /format version 2 is not supported \(this engine reads version 1\)/);
    }
    refused(patched(12, 99, false), /checksum mismatch/);
    refused(patched(12, 99, true), /taken with core ABI 99 .*this engine has ABI/);
    refused(patched(16, 0xbad, true), /hash bad\), this engine has ABI/);
  });

  test('anything but snapshot bytes is EINVAL', () => {
    for (const v of [undefined, null, 0, 'IOASIDSN', {}, [], new ArrayBuffer(64), new Uint16Array(64), new Uint8Array(64)]) refused(v);
  });

  test('well-formed (checksummed) but inconsistent content is EINVAL, never a half-built engine', () => {
    const cases: [string, (s: Editable) => void, RegExp][] = [
      ['graph not an object', (s) => (s.graph = 7), /graph/],
      ['unknown object type', (s) => (s.graph.fds[0].objects[0].type = 'viommu'), /unknown object type/],
      ['duplicate ID', (s) => s.graph.fds[0].objects.push(s.graph.fds[0].objects[0]), /duplicate ID/],
      ['dangling HWPT reference', (s) => (s.graph.devices[0].attached[0][1] = 999), /not a HWPT/],
      ['ID allocator inconsistent', (s) => (s.graph.fds[0].freed = []), /inconsistent/],
      ['negative users', (s) => (s.graph.fds[0].objects[0].users = -1), /users/],
      ['IOAS HWPT list incomplete', (s) => (s.graph.fds[0].objects[0].hwpts = []), /refer/],
      ['HWPT on a domain that is not live', (s) => (s.graph.fds[0].objects.find((o: any) => o.type === 'hwpt-paging').domain = 60), /domain/],
      ['PASID owned by nobody', (s) => (s.graph.fds[0].pasids = []), /PASID/],
      ['device context missing', (s) => (s.graph.devices[3].rid = 0x0901), /context|device/],
      ['bad hex', (s) => (s.graph.fds[0].objects[0].iopt.areas[0][0] = '4096'), /hex/],
      ['layout of other options', (s) => (s.header.options.translators = 5), /layout|control word/],
      ['memory size out of range', (s) => (s.header.memoryBytes = 3), /memoryBytes/],
      ['pool top elsewhere', (s) => (s.header.poolTop += 4096), /image/],
      ['image bitmap cut', (s) => (s.image = s.image.subarray(0, 100)), /image/],
      ['image with a page more', (s) => {
        const more = new Uint8Array(s.image.length + 4096);
        more.set(s.image);
        s.image = more;
      }, /image/],
      ['options refused by create', (s) => (s.header.options.addressWidth = 50), /addressWidth/],
    ];
    for (const [name, edit, why] of cases) {
      let result: unknown;
      expect(() => (result = Iommu.restore(reencode(bytes, edit))), name).toThrow(IommuError);
      expect(result, name).toBeUndefined();
      refused(reencode(bytes, edit), why);
    }
  });

  test('random mutations: Iommu.restore returns an engine or throws an IommuError, nothing else', () => {
    let refusedCount = 0;
    for (let i = 0; i < 300; i++) {
      const kind = i % 3;
      let b: Uint8Array = bytes.slice();
      if (kind === 0) for (let k = 1 + rng.int(4); k > 0; k--) b[rng.int(b.length)] = rng.int(256);
      else if (kind === 1) b = b.slice(0, rng.int(b.length));
      else {
        // Checksummed: mutate a JSON value or an image byte, then re-encode.
        b = reencode(bytes, (s) => {
          if (rng.chance(0.5)) s.image[rng.int(s.image.length)] = rng.int(256);
          else mutateJson(rng.chance(0.5) ? s.graph : s.header, rng);
        });
      }
      try {
        Iommu.restore(b);
      } catch (e) {
        expect(e, `mutation ${i}`).toBeInstanceOf(IommuError);
        refusedCount++;
      }
    }
    expect(refusedCount).toBeGreaterThan(200);
  });
});

/** Changes one random leaf of a JSON tree to a random other value. */
function mutateJson(root: any, rng: Rng): void {
  let node = root;
  for (;;) {
    const keys = Object.keys(node);
    if (keys.length === 0) return;
    const k = rng.pick(keys);
    const v = node[k];
    if (typeof v === 'object' && v !== null && rng.chance(0.85)) {
      node = v;
      continue;
    }
    node[k] = rng.pick([0, 1, -1, 2 ** 40, 'x', '0xffffffffffffffff', null, true, [], {}, v === undefined ? 3 : undefined]);
    return;
  }
}

// ---- The demo machine, snapshotted in the middle of worker DMA --------------------------------------

const dist = new URL('../dist/index.js', import.meta.url);

describe.skipIf(!existsSync(dist))('the demo machine', () => {
  test('snapshot in the middle of worker DMA, restore: every mapped page of every device and PASID translates as at the snapshot', async () => {
    // The machine of examples/machine.mjs (VM A and VM B, five device models on workers), owned by
    // this build of the engine; the workers run examples/device-worker.mjs over dist/.
    const { buildVmA, buildVmB } = await import('../examples/vms.mjs');
    const { rogueDmaPlan } = await import('../examples/rogue.mjs');
    const { BATCH_CAPACITY, ramPlacement } = await import('../examples/machine.mjs');
    const { CONTROL, DEVICES, MACHINE_RAM } = await import('../examples/machine-layout.mjs');
    const iommu = await Iommu.create({ ram: MACHINE_RAM });
    const vmA = buildVmA(iommu);
    const vmB = buildVmB(iommu);
    const plans: [vm: any, name: 'accel' | 'nicA' | 'nicB' | 'disk' | 'rogue', windows: unknown][] = [[vmA, 'accel', vmA.dma.accel], [vmA, 'nicA', vmA.dma.nicA], [vmB, 'nicB', vmB.dma.nicB], [vmB, 'disk', vmB.dma.disk], [vmB, 'rogue', rogueDmaPlan(vmA)]];
    const devices: DeviceFd[] = plans.map(([vm, name]) => vm.devices[name]);
    const control = new SharedArrayBuffer(CONTROL.WORDS * 4);
    const flags = new Int32Array(control);
    const signal = (word: number): void => {
      Atomics.store(flags, word, 1);
      Atomics.notify(flags, word);
    };
    const reports = Promise.all(plans.map(([vm, name, windows]) => new Promise<{ translations: number }>((resolve, reject) => {
      const worker = new Worker(new URL('../examples/device-worker.mjs', import.meta.url), {
        workerData: {
          handle: iommu.translatorHandle({ batchCapacity: BATCH_CAPACITY }), windows, ram: ramPlacement(iommu), control,
          device: { name, rid: vm.devices[name].rid, tag: DEVICES[name].tag, host: vm.host },
        },
      });
      worker.once('message', resolve);
      worker.once('error', reject);
    })));
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    while (Atomics.load(flags, CONTROL.READY) < plans.length) await sleep(1);
    signal(CONTROL.GO);
    const steps = async (n: number) => {
      for (let i = 0; i < n; i++) {
        vmA.controlStep();
        vmB.controlStep();
        await sleep(1);
      }
    };
    await steps(25);

    // Between two control calls, with the workers translating: what the snapshot must restore.
    const fds = [vmA.fd, vmB.fd];
    const pages = probePages(fds, []);
    const objects = fds.map((fd) => fd.objects());
    const expected = translations(iommu, fds, devices, pages);
    const t0 = performance.now();
    const translatedBefore = iommu.stats().translations;
    const bytes = iommu.snapshot();
    const translatedDuring = iommu.stats().translations - translatedBefore; // by the workers only
    const snapMs = performance.now() - t0;
    const midDma = Atomics.load(flags, CONTROL.STOP) === 0;
    await steps(25);
    signal(CONTROL.STOP);
    const done = await reports;
    expect(midDma).toBe(true);
    expect(translatedDuring).toBeGreaterThan(0);
    expect(done.every((r) => r.translations > 0)).toBe(true);

    const t1 = performance.now();
    const r = Iommu.restore(bytes);
    console.log(`demo machine: snapshot ${(bytes.length / 2 ** 20).toFixed(1)} MiB of a ${iommu.memory.buffer.byteLength / 2 ** 20} MiB engine in ${snapMs.toFixed(0)} ms (workers translated ${translatedDuring} meanwhile), restore ${(performance.now() - t1).toFixed(0)} ms; ${expected.length} translations compared`);
    expect(r.fds.map((fd) => fd.objects())).toEqual(objects);
    const restoredDevices = devices.map((d) => r.devices.get(d.bdf)!);
    expect(translations(r.iommu, r.fds, restoredDevices, pages)).toEqual(expected);
    expect(expected.filter((t) => !/ [a-z-]+$/.test(t)).length).toBeGreaterThan(50_000);
    // The restored machine runs on: its owner can hand out every worker slot again and keep DMAing.
    expect(r.iommu.translatorHandle().slot).toBe(1);
    expect(r.iommu.translate(r.devices.get(vmA.devices.nicA.bdf)!.rid, NO_PASID, 0x1000, Access.Read).ok).toBe(true);
    vmA.fd.close();
    vmB.fd.close();
  }, 60_000);
});
