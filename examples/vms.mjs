// The two VMs' VMMs: each opens its own ioasid FD, programs its address spaces (the FD's job) and
// authorizes its devices to use them (the device FD's job). Each returns what the rest of the
// machine needs: the FD, the devices, their DMA plans for the workers, and one control operation
// the owner repeats while the devices are doing DMA.
import { Access, NO_PASID } from 'ioasid';
import {
  DEVICES, GUEST_RAM_IOVA, HOTPLUG_BYTES, HOTPLUG_GPA, HOTPLUG_IOVA, MiB, PAGE, PROCESS_BYTES,
  PROCESS_GPA, PROCESS_VA, QUARANTINE_GPA, QUARANTINE_IOVA, RING_GPA, RING_IOVA, RING_PAGES,
  VM_HOST_RANGE, VM_RAM_BYTES,
} from './machine-layout.mjs';

/**
 * Guest RAM at IOVA 0 as one 2 MiB-aligned mapping (the engine uses 2 MiB leaves), and the
 * descriptor rings as separate 4 KiB mappings (4 KiB leaves).
 */
function mapGuestRam(fd, ioas, host) {
  fd.ioasMap(ioas, { iova: GUEST_RAM_IOVA, length: VM_RAM_BYTES, phys: host.start });
  for (let page = 0; page < RING_PAGES; page++) {
    fd.ioasMap(ioas, { iova: RING_IOVA + page * PAGE, length: PAGE, phys: host.start + RING_GPA + page * PAGE });
  }
}

/** A DMA window of a device: where its descriptors point, with which access, in which steps. */
export const dmaWindow = (name, { pasid = NO_PASID, iova, bytes, step, access, mayFault = false, mustFault = false, why }) =>
  ({ name, pasid, iova, bytes, step, access, mayFault, mustFault, why });
const ringWindow = (page) => dmaWindow('ring', { iova: RING_IOVA + page * PAGE, bytes: PAGE, step: 64, access: Access.Read });

/** VM A: an accelerator serving two processes (one PASID each) plus a NIC on the RID. */
export function buildVmA(iommu) {
  const host = VM_HOST_RANGE.A;
  const fd = iommu.open();
  const guestRam = fd.ioasAlloc();
  mapGuestRam(fd, guestRam, host);

  const accel = iommu.addDevice({ bdf: DEVICES.accel.bdf, pasidBits: DEVICES.accel.pasidBits });
  const nic = iommu.addDevice({ bdf: DEVICES.nicA.bdf, pasidBits: DEVICES.nicA.pasidBits });
  const accelId = accel.bind(fd);
  nic.bind(fd);
  // A device with PASIDs attached needs a PASID-capable HWPT on its RID too (iommufd's rule),
  // so the accelerator gets an explicit one; the NIC attaches to the IOAS and gets an auto HWPT.
  accel.attach(fd.hwptAlloc({ devId: accelId, ptId: guestRam, pasid: true }));
  nic.attach(guestRam);

  // Each process's address space: its own IOAS, a PASID-capable HWPT on it, and a PASID of this FD.
  const processSpace = (gpa) => {
    const ioas = fd.ioasAlloc();
    fd.ioasMap(ioas, { iova: PROCESS_VA, length: PROCESS_BYTES, phys: host.start + gpa });
    return fd.hwptAlloc({ devId: accelId, ptId: ioas, pasid: true });
  };
  const processOne = { pasid: fd.pasidAlloc(), hwpt: processSpace(PROCESS_GPA.one) };
  const processTwo = { pasid: fd.pasidAlloc(), hwpt: processSpace(PROCESS_GPA.two) };
  const processTwoAfterExec = processSpace(PROCESS_GPA.twoAfterExec);
  accel.attach(processOne.hwpt, { pasid: processOne.pasid });
  accel.attach(processTwo.hwpt, { pasid: processTwo.pasid });

  let execed = false;
  return {
    name: 'A', fd, host,
    devices: { accel, nicA: nic },
    /** What a snooping neighbour could learn about this VM: numbers only. */
    exposed: {
      guestRamIoas: guestRam,
      processHwpts: [processOne.hwpt, processTwo.hwpt],
      pasid: processOne.pasid,
    },
    dma: {
      accel: [
        ringWindow(0),
        dmaWindow('process-1 src', { pasid: processOne.pasid, iova: PROCESS_VA, bytes: PROCESS_BYTES, step: PAGE, access: Access.Read }),
        dmaWindow('process-2 dst', { pasid: processTwo.pasid, iova: PROCESS_VA, bytes: PROCESS_BYTES, step: PAGE, access: Access.Write }),
      ],
      nicA: [
        ringWindow(1),
        dmaWindow('rx buffers', { iova: GUEST_RAM_IOVA + 16 * MiB, bytes: 8 * MiB, step: 2048, access: Access.Write }),
      ],
    },
    /**
     * Control operation: process two execs (and back). Attaching an attached PASID replaces its
     * HWPT in one step; in-flight DMA sees the old or the new address space, never a fault.
     */
    controlStep() {
      execed = !execed;
      accel.attach(execed ? processTwoAfterExec : processTwo.hwpt, { pasid: processTwo.pasid });
      return 'PASID replace';
    },
  };
}

/** VM B: a NIC and a disk on the RID, plus a device it does not trust, kept in quarantine. */
export function buildVmB(iommu) {
  const host = VM_HOST_RANGE.B;
  const fd = iommu.open();
  const guestRam = fd.ioasAlloc();
  mapGuestRam(fd, guestRam, host);

  const nic = iommu.addDevice({ bdf: DEVICES.nicB.bdf, pasidBits: DEVICES.nicB.pasidBits });
  const disk = iommu.addDevice({ bdf: DEVICES.disk.bdf, pasidBits: DEVICES.disk.pasidBits });
  const rogue = iommu.addDevice({ bdf: DEVICES.rogue.bdf, pasidBits: DEVICES.rogue.pasidBits });
  nic.bind(fd);
  disk.bind(fd);
  const rogueId = rogue.bind(fd);
  nic.attach(guestRam);
  disk.attach(guestRam); // same IOAS, so it shares the NIC's auto HWPT

  // The rogue's quarantine: one scratch page. PASID-capable, so its PASID attempts fail on the
  // PASID's owner alone, not on the HWPT.
  const quarantine = fd.ioasAlloc();
  fd.ioasMap(quarantine, { iova: QUARANTINE_IOVA, length: PAGE, phys: host.start + QUARANTINE_GPA });
  const quarantineHwpt = fd.hwptAlloc({ devId: rogueId, ptId: quarantine, pasid: true });
  rogue.attach(quarantineHwpt);

  let hotplugMapped = false;
  return {
    name: 'B', fd, host,
    devices: { nicB: nic, disk, rogue },
    quarantineHwpt,
    dma: {
      nicB: [
        ringWindow(0),
        dmaWindow('rx buffers', { iova: GUEST_RAM_IOVA + 16 * MiB, bytes: 8 * MiB, step: 2048, access: Access.Write }),
        // Mapped half of the time: translations either succeed or fault not-present.
        dmaWindow('hot-plug rx pool', { iova: HOTPLUG_IOVA, bytes: HOTPLUG_BYTES, step: 2048, access: Access.Write, mayFault: true,
          why: 'VM B unmaps and remaps this RX pool while the NIC runs (a hot-unplug): DMA while it is unmapped must fault' }),
      ],
      disk: [
        ringWindow(1),
        dmaWindow('sector reads', { iova: GUEST_RAM_IOVA + 24 * MiB, bytes: 16 * MiB, step: 512, access: Access.Write }),
        dmaWindow('sector writes', { iova: GUEST_RAM_IOVA + 40 * MiB, bytes: 16 * MiB, step: 512, access: Access.Read }),
      ],
    },
    /** Control operation: map or unmap the NIC's hot-plug RX pool (sixteen 4 KiB leaves). */
    controlStep() {
      if (hotplugMapped) fd.ioasUnmap(guestRam, HOTPLUG_IOVA, HOTPLUG_BYTES);
      else fd.ioasMap(guestRam, { iova: HOTPLUG_IOVA, length: HOTPLUG_BYTES, phys: host.start + HOTPLUG_GPA });
      hotplugMapped = !hotplugMapped;
      return hotplugMapped ? 'map' : 'unmap';
    },
  };
}
