// The emulated machine's memory map and PCI functions: plain data, shared by the owner thread
// (which programs the IOMMU from it) and the device workers (which check their DMA against it).
//
// Host-physical memory: the machine's RAM lives inside the engine memory (`Iommu.create({ ram })`),
// so device models can really write where the IOMMU sends them. Each VM owns one 64 MiB slice.
// Every IOVA layout below is the same in both VMs: IDs, IOVAs and guest addresses are per VM.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const PAGE = 4 * KiB;

/** Machine RAM (host-physical). 2 MiB-aligned, so guest RAM can use 2 MiB leaves. */
export const MACHINE_RAM = { base: 0x8000_0000, bytes: 128 * MiB };

/** Each VM's slice of machine RAM: its guest RAM, backing every address space it programs. */
export const VM_RAM_BYTES = 64 * MiB;
export const VM_HOST_RANGE = {
  A: { start: MACHINE_RAM.base, end: MACHINE_RAM.base + VM_RAM_BYTES },
  B: { start: MACHINE_RAM.base + VM_RAM_BYTES, end: MACHINE_RAM.base + 2 * VM_RAM_BYTES },
};

/** Guest RAM is identity-mapped for RID DMA: IOVA = guest-physical address (GPA). */
export const GUEST_RAM_IOVA = 0;

/** Descriptor rings: 4 KiB pages mapped one by one (as a guest's dma_map_page would), aliasing guest RAM. */
export const RING_IOVA = 0x1_0000_0000;
export const RING_GPA = 15 * MiB;
export const RING_PAGES = 8;

/** VM B's hot-plugged RX pool: the owner maps and unmaps it while the NIC is doing DMA. */
export const HOTPLUG_IOVA = 0x2_0000_0000;
export const HOTPLUG_GPA = 56 * MiB;
export const HOTPLUG_BYTES = 64 * KiB;

/** VM B's quarantine window: the only IOVAs the rogue device is given. */
export const QUARANTINE_IOVA = 0x3_0000_0000;
export const QUARANTINE_GPA = 60 * MiB;

/** VM A's two accelerator processes: the same user VA, different memory (one PASID each). */
export const PROCESS_VA = 0x7f00_0000_0000;
export const PROCESS_BYTES = 4 * MiB;
export const PROCESS_GPA = { one: 40 * MiB, two: 44 * MiB, twoAfterExec: 48 * MiB };

/**
 * The PCI functions. `tag` is the top byte of every word a device writes by DMA, so a scan of
 * memory afterwards tells whose DMA landed where.
 */
export const DEVICES = {
  accel: { vm: 'A', bdf: '0000:03:00.0', tag: 0xa1, pasidBits: 20 },
  nicA: { vm: 'A', bdf: '0000:04:00.0', tag: 0xa2, pasidBits: 0 },
  nicB: { vm: 'B', bdf: '0000:05:00.0', tag: 0xb1, pasidBits: 0 },
  disk: { vm: 'B', bdf: '0000:06:00.0', tag: 0xb2, pasidBits: 0 },
  rogue: { vm: 'B', bdf: '0000:07:00.0', tag: 0xbf, pasidBits: 20 },
};

/** The VM whose DMA carries `tag`, from the DEVICES table. */
export function vmOfTag(tag) {
  return Object.values(DEVICES).find((d) => d.tag === tag)?.vm;
}

/** Words of the SharedArrayBuffer the owner steers its device workers with. */
export const CONTROL = { STOP: 0, READY: 1, GO: 2, WORDS: 3 };

export const hex = (n) => `0x${n.toString(16)}`;
