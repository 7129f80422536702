/**
 * The ok.* / err.* helpers (test/helpers.ts) cover every control command of the public classes,
 * and the state err.* compares sees what those commands change -- so an err.* check of any
 * command can fail when a failed call leaves something behind.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { DeviceFd, FaultQueueFd, IoasAccess, Iommu, IommuFd, NO_PASID } from '../src/index';
import { COMMANDS, err, makeIommu, ok, snapshot } from './helpers';
import { GuestRam } from './vectors/guest-tables';

/** Public methods that are not control commands: queries, the DMA path, and `@internal` hooks of the object model. */
const NOT_COMMANDS: Record<string, readonly string[]> = {
  Iommu: ['translate', 'translateInto', 'dmaRead', 'dmaWrite', 'stats', 'ramWindows', 'device', 'devices'],
  IommuFd: ['objects', 'pasids'],
  DeviceFd: ['attachments', 'attachedHwpts', 'pageResponses', 'pushPageResponse', 'exportState', 'importState', 'unbindFrom'],
  IoasAccess: ['pinned', 'restorePins', 'release', 'details'],
  FaultQueueFd: [],
};

/** Where each class is written (its `private` methods are not API). */
const SOURCE: Record<string, string> = {
  Iommu: 'src/iommu.ts', IommuFd: 'src/iommufd/iommufd.ts', DeviceFd: 'src/iommufd/device.ts',
  IoasAccess: 'src/iommufd/access.ts', FaultQueueFd: 'src/iommufd/fault-queue.ts',
};

/** The helper command of a method: the method's name, prefixed for the classes whose names clash. */
const PREFIX: Record<string, string> = { Iommu: '', IommuFd: '', DeviceFd: '', IoasAccess: 'access', FaultQueueFd: 'fault' };

/** The public methods of a class: its prototype's functions minus those its source declares `private`. */
function methodsOf(name: string, cls: { prototype: object }): string[] {
  const source = readFileSync(new URL(`../${SOURCE[name]}`, import.meta.url), 'utf8');
  const privates = new Set([...source.matchAll(/^\s+private\s+(?:static\s+)?(\w+)\s*[(<]/gm)].map((m) => m[1]!));
  return Object.getOwnPropertyNames(cls.prototype).filter((m) => {
    const d = Object.getOwnPropertyDescriptor(cls.prototype, m)!;
    return m !== 'constructor' && typeof d.value === 'function' && !privates.has(m);
  });
}

describe('the helpers cover every command', () => {
  const classes = { Iommu, IommuFd, DeviceFd, IoasAccess, FaultQueueFd } as const;
  for (const [name, cls] of Object.entries(classes)) {
    test(`${name}: every method is an ok.*/err.* command or a listed non-command`, () => {
      const prefix = PREFIX[name]!;
      const missing = methodsOf(name, cls)
        .filter((m) => !NOT_COMMANDS[name]!.includes(m))
        .map((m) => (prefix ? prefix + m[0]!.toUpperCase() + m.slice(1) : m))
        .filter((command) => !COMMANDS.includes(command));
      expect(missing).toEqual([]);
    });
  }
});

const RAM = 0x1000_0000n;

/** A world with every object type: a nest parent and a nested sv39 HWPT on a fault queue, a dirty HWPT, an access. */
function rich() {
  const iommu = makeIommu({ ram: { base: RAM, bytes: 4 << 20 } });
  const fd = ok.open(iommu);
  const dev = ok.addDevice(iommu, { bdf: '00:05.0', pri: true, dirty: true });
  const devId = ok.bind(dev, fd);
  const ioas = ok.ioasAlloc(fd);
  ok.ioasMap(fd, ioas, { iova: 0x10_0000, length: 0x4000, phys: RAM });
  const dirty = ok.hwptAlloc(fd, { devId, ptId: ioas, dirtyTracking: true });
  const root = new GuestRam(iommu, RAM, RAM + 0x10_0000n).table();
  const queue = ok.faultQueueAlloc(fd);
  const user = ok.hwptAlloc(fd, { devId, faultId: queue.id, table: { format: 'sv39', root } });
  const access = ok.accessCreate(fd, ioas, { onUnmap: () => undefined });
  return { iommu, fd, dev, devId, ioas, dirty, user, queue, access };
}

describe('the state err.* compares sees what every kind of command changes', () => {
  test('dirty-tracking enables, pins, user HWPTs, attachments, page requests read, translator rings', () => {
    const w = rich();
    const changes: [string, () => unknown][] = [
      ['hwptSetDirtyTracking', () => ok.hwptSetDirtyTracking(w.fd, w.dirty, true)],
      ['accessPin', () => ok.accessPin(w.access, 0x10_0000, 0x1000)],
      ['hwptAlloc (user)', () => ok.hwptAlloc(w.fd, { devId: w.devId, table: { format: 'sv39', root: RAM + 0x2_0000n } })],
      ['attach', () => ok.attach(w.dev, w.user)],
      ['faultRead of a request raised by a faulting DMA', () => {
        w.iommu.translate(w.dev.rid, NO_PASID, 0x7000, 1);
        return ok.faultRead(w.queue.fd);
      }],
      ['translatorHandle', () => (w.iommu.shared ? ok.translatorHandle(w.iommu) : ok.destroy(w.fd, w.dirty))],
    ];
    for (const [what, change] of changes) {
      const before = snapshot(w.fd);
      change();
      expect(snapshot(w.fd), `${what} must show in the snapshot`).not.toEqual(before);
    }
  });

  test('failed calls of every command family leave that state as it was', () => {
    const w = rich();
    ok.hwptSetDirtyTracking(w.fd, w.dirty, true);
    ok.accessPin(w.access, 0x10_0000, 0x1000);
    ok.attach(w.dev, w.user);
    w.iommu.translate(w.dev.rid, NO_PASID, 0x7000, 1);
    const [request] = ok.faultRead(w.queue.fd);
    err.hwptInvalidate('EINVAL', w.fd, w.dirty, [{}]); // a paging HWPT takes no invalidation
    err.hwptInvalidate('EINVAL', w.fd, w.user, [{}, { iova: 0, length: 0 }]); // the good first entry is applied: the IOTLB is not state
    err.hwptSetDirtyTracking('ENOENT', w.fd, w.user, false);
    err.hwptGetDirtyBitmap('EINVAL', w.fd, w.dirty, { iova: 0x10_0000, length: 0, pageSize: 4096 });
    err.accessPin('ENOENT', w.access, 0x20_0000, 0x1000);
    err.accessUnpin('ENOENT', w.access, 0x10_1000, 0x1000);
    err.faultWrite('EINVAL', w.queue.fd, [{ cookie: request!.cookie + 100, code: 'success' }]);
    err.hwptAlloc('EINVAL', w.fd, { devId: w.devId, table: { format: 'sv39', root: RAM + 0x800n } });
    err.accessCreate('ENOENT', w.fd, 999);
    err.faultQueueAlloc('EBADF', (() => {
      const closed = ok.open(w.iommu);
      ok.close(closed);
      return closed;
    })());
    err.destroy('EBUSY', w.fd, w.queue.id);
    err.translatorRelease('EINVAL', w.iommu, { slot: 1 } as never);
  });
});
