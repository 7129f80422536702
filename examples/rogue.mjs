// The rogue device: bound to VM B's ioasid FD, it tries to reach VM A with what a snooping
// neighbour could learn about A — A's object IDs and A's PASID. Authority comes from holding an
// FD, and B's FD holds nothing of A's: IDs are FD-local numbers and PASIDs belong to the FD that
// allocated them. Its DMA plan then aims at A's PASID and A's IOVAs, which must all fault.
import { Access, IommuError, NO_PASID } from 'ioasid';
import { GUEST_RAM_IOVA, PAGE, PROCESS_BYTES, PROCESS_VA, QUARANTINE_IOVA, VM_RAM_BYTES, hex } from './machine-layout.mjs';
import { dmaWindow } from './vms.mjs';

const inRange = (phys, range) => phys >= BigInt(range.start) && phys < BigInt(range.end);

/**
 * Runs the authorization attempts on the owner thread and puts the rogue back in quarantine.
 * @returns one record per attempt: { call, outcome, errno?, pass }.
 */
export function tryToReachVmA(iommu, vmA, vmB) {
  const { rogue } = vmB.devices;
  const attempts = [];

  // Reports the errno of a refused call, or lets `accepted` describe (and judge) a successful one.
  const attempt = (call, expectedErrnos, action, accepted) => {
    try {
      attempts.push({ call, ...accepted(action()) });
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      attempts.push({ call, errno: e.errno, outcome: e.errno, pass: expectedErrnos.includes(e.errno) });
    }
  };

  // A's IDs, used from B's FD. Either nothing in B has that number (ENOENT), or it names one of
  // B's own objects: then the attach is B's business, and DMA through it still never reaches A.
  const probeForeignId = (label, id, probeIova) =>
    attempt(`rogue.attach(${id})  — ${label}`, ['ENOENT', 'EINVAL'], () => rogue.attach(id), (hwptId) => {
      const type = vmB.fd.objects().find((o) => o.id === id)?.type;
      const t = iommu.translate(rogue.rid, NO_PASID, probeIova, Access.Read);
      const landing = t.ok
        ? `DMA to ${hex(probeIova)} lands at ${hex(t.phys)}, ${inRange(t.phys, vmB.host) ? 'inside VM B' : 'OUTSIDE VM B'}`
        : `DMA to ${hex(probeIova)} faults ${t.fault.reason}`;
      return {
        outcome: `accepted: #${id} in B's FD is B's own ${type}${hwptId === id ? '' : ` (attached via HWPT #${hwptId})`}; ${landing}`,
        pass: !(t.ok && inRange(t.phys, vmA.host)),
      };
    });

  probeForeignId("VM A's guest RAM IOAS ID", vmA.exposed.guestRamIoas, GUEST_RAM_IOVA + PAGE);
  for (const hwpt of vmA.exposed.processHwpts) probeForeignId("VM A's process HWPT ID", hwpt, PROCESS_VA);

  // A's PASID: owned by A's FD, so no device bound to B's FD may use it, on any HWPT.
  const pasid = vmA.exposed.pasid;
  const mustBeRefused = () => ({ outcome: 'accepted', pass: false });
  attempt(`rogue.attach(${vmB.quarantineHwpt}, { pasid: ${pasid} })  — VM A's PASID`, ['EPERM'],
    () => rogue.attach(vmB.quarantineHwpt, { pasid }), mustBeRefused);
  // PASIDs are system-wide: B can neither take A's nor free it.
  attempt(`fdB.pasidAlloc({ pasid: ${pasid} })`, ['EEXIST'], () => vmB.fd.pasidAlloc({ pasid }), mustBeRefused);
  attempt(`fdB.pasidFree(${pasid})`, ['ENOENT'], () => vmB.fd.pasidFree(pasid), mustBeRefused);

  rogue.attach(vmB.quarantineHwpt); // back to quarantine (replaces whatever an accepted probe attached)
  return attempts;
}

/** The rogue's DMA plan for its worker: its own page works; everything aimed at VM A must fault. */
export function rogueDmaPlan(vmA) {
  return [
    dmaWindow('own scratch page', { iova: QUARANTINE_IOVA, bytes: PAGE, step: 64, access: Access.Write }),
    dmaWindow("A's PASID", { pasid: vmA.exposed.pasid, iova: PROCESS_VA, bytes: PROCESS_BYTES, step: PAGE, access: Access.Write, mustFault: true,
      why: "the rogue DMAs with VM A's PASID, which it was never allowed to attach: isolation must fault it" }),
    dmaWindow("A's guest RAM IOVAs", { iova: GUEST_RAM_IOVA, bytes: VM_RAM_BYTES, step: 64 * 1024, access: Access.Write, mustFault: true,
      why: "the rogue DMAs at VM A's guest RAM IOVAs; its own address space maps none of them: isolation must fault it" }),
  ];
}
