// The own-memory demo, shared by Node (run.mjs) and the browser (index.html): ioasid lives inside a
// region of the example machine's WebAssembly.Memory (machine.ts), walks the guest's page tables
// where the guest wrote them and lets the machine's device DMA through its translations.
// `ioasid` is the package's module, `wasm` the compiled machine; `log` prints a line.
// Returns the checks, each { name, ok }.

const PAGES = 8;
const IOVA = 0x4000_0000n;
/** The guest maps its RAM pages 16.. for the device. */
const FIRST_PAGE = 16;

export async function runDemo(ioasid, wasm, log) {
  const { Iommu, Access, NO_PASID, TranslationOut } = ioasid;
  let iommu;
  let rid = 0;
  const out = new TranslationOut();
  // The machine's IOMMU import: ioasid translates; the machine copies within its own memory.
  const host = {
    translate: (r, lo, hi, access) => {
      iommu.translateInto(out, r, NO_PASID, hi * 2 ** 32 + lo, access);
      return out.ok ? out.phys : -1;
    },
  };
  const { instance } = await WebAssembly.instantiate(wasm, { host });
  const m = instance.exports;
  const memory = m.memory;
  const sizeBefore = memory.buffer.byteLength;
  const ram = { base: m.ramBase(), offset: m.ramOffset(), bytes: m.ramBytes() };
  const region = { offset: m.regionOffset(), bytes: m.regionBytes() };
  log(`machine memory: ${sizeBefore / 2 ** 20} MiB (${memory.buffer instanceof ArrayBuffer ? 'unshared' : 'shared'}), guest RAM at offset 0x${ram.offset.toString(16)}, ioasid region [0x${region.offset.toString(16)}, +0x${region.bytes.toString(16)})`);

  iommu = await Iommu.create({ memory, region, ram: [ram], translators: 1, maxDomains: 16 });
  const dev = iommu.addDevice({ bdf: '00:03.0' });
  rid = dev.rid;
  const fd = iommu.open();
  const devId = dev.bind(fd);
  // The guest writes x86-64 tables into its RAM; ioasid is told only where the root is.
  const root = m.guestMap(IOVA, PAGES, FIRST_PAGE);
  const hwpt = fd.hwptAlloc({ devId, table: { format: 'x86-64', root, hwAccessDirty: true } });
  dev.attach(hwpt);
  log(`guest tables at GPA 0x${root.toString(16)} (in the machine's memory), attached as HWPT ${hwpt}`);

  const length = PAGES * 4096 - 300;
  const done = m.deviceWrite(rid, IOVA + 100n, length, 7);
  log(`device DMA: ${done} of ${length} bytes written through ${iommu.stats().misses} walks`);
  let expected = 0;
  for (let i = 0; i < length; i++) expected += (7 + i) & 0xff;
  const seen = m.guestSum(ram.base + BigInt(FIRST_PAGE * 4096 + 100), length);
  const leaf = m.guestEntry(IOVA, 0);
  const AD = 0x60n;
  log(`guest sees the data: sum ${seen} (expected ${expected}); leaf entry 0x${leaf.toString(16)} (A/D set by ioasid in the machine's memory)`);
  iommu.faults.drain();
  const beyond = m.deviceWrite(rid, IOVA + BigInt(PAGES * 4096), 16, 0);
  const fault = iommu.faults.drain()[0];
  log(`DMA past the guest's mapping: ${beyond} bytes, fault ${fault?.reason} at level ${fault?.level}`);

  const checks = [
    { name: 'the device wrote every byte', ok: done === length },
    { name: 'the guest reads what the device wrote', ok: seen === expected },
    { name: 'ioasid set A and D in the guest\'s leaf, in the machine\'s memory', ok: (leaf & AD) === AD },
    { name: 'DMA outside the guest\'s mapping faults', ok: beyond === 0 && fault?.reason === 'not-present' },
    { name: 'ioasid never grew the machine\'s memory', ok: memory.buffer.byteLength === sizeBefore },
  ];
  for (const c of checks) log(`${c.ok ? 'PASS' : 'FAIL'}: ${c.name}`);
  fd.close();
  return checks;
}
