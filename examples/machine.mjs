// The emulated machine, independent of where it runs: both VMs built on one IOMMU, the rogue's
// authorization attempts, the device models to start (one per PCI function, each with its DMA
// plan), the owner's control step, and the end of a run (closing the FDs). Shared by the Node demo
// (emulated-machine.mjs) and the browser demo (web/).
import { Access, NO_PASID } from 'ioasid';
import { DEVICES, MACHINE_RAM } from './machine-layout.mjs';
import { rogueDmaPlan, tryToReachVmA } from './rogue.mjs';
import { buildVmA, buildVmB } from './vms.mjs';

/** Requests per device burst (the batch ring of each translator). */
export const BATCH_CAPACITY = 256;

/** Machine RAM's place in the engine memory, as a device model needs it (device-model.mjs `ram`). */
export const ramPlacement = (iommu) => ({ base: MACHINE_RAM.base, byteOffset: iommu.ram.byteOffset, bytes: iommu.ram.byteLength });

/**
 * Builds VM A and VM B on `iommu` (created with `{ ram: MACHINE_RAM }`) and runs the rogue's
 * attempts. `devices` lists what each device model needs: { name, vm, device, windows }.
 */
export function buildMachine(iommu) {
  const vmA = buildVmA(iommu);
  const vmB = buildVmB(iommu);
  // The rogue tries A's IDs and A's PASID from B's FD, before any DMA runs.
  const attempts = tryToReachVmA(iommu, vmA, vmB);
  const plans = [
    [vmA, 'accel', vmA.dma.accel], [vmA, 'nicA', vmA.dma.nicA],
    [vmB, 'nicB', vmB.dma.nicB], [vmB, 'disk', vmB.dma.disk], [vmB, 'rogue', rogueDmaPlan(vmA)],
  ];
  const devices = plans.map(([vm, name, windows]) => ({
    name, vm, windows,
    device: { name, rid: vm.devices[name].rid, tag: DEVICES[name].tag, host: vm.host },
  }));
  const controlOps = { A: 0, B: 0 };
  return {
    vmA, vmB, attempts, devices, controlOps,
    /**
     * The owner changes state underneath the devices: A's process two execs (its PASID is
     * re-attached to a new address space) and B maps or unmaps a hot-plugged RX pool.
     */
    controlStep() {
      vmA.controlStep();
      controlOps.A++;
      vmB.controlStep();
      controlOps.B++;
    },
  };
}

/**
 * Ends a run: closing A's FD tears down everything it holds, so its devices' DMA is blocked from
 * then on; then B's FD is closed. @returns the translation of a nicA DMA after the close.
 */
export function closeVms(iommu, { vmA, vmB }) {
  vmA.fd.close();
  const afterClose = iommu.translate(vmA.devices.nicA.rid, NO_PASID, 0x1000, Access.Read);
  vmB.fd.close();
  return afterClose;
}
