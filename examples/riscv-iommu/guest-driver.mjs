// A guest's RISC-V IOMMU driver, written the way Linux's drivers/iommu/riscv/iommu.c programs the
// device (register level, RISC-V IOMMU specification 1.0): a 3-level device directory, a command
// queue and a fault queue, one device context per device with an Sv39 first-stage table and its
// own PSCID; map = PTE write + IOTINVAL.VMA, unmap = PTE clear + IOTINVAL.VMA + IOFENCE.C.
//
// It touches only what a guest can: the IOMMU's register page (`mmioRead`/`mmioWrite`) and guest
// RAM (`ram`, at guest-physical `ramBase`). Tables come from a bump allocator over [heap, heapEnd).

const REG = { capabilities: 0, ddtp: 16, cqb: 24, cqh: 32, cqt: 36, fqb: 40, fqh: 48, fqt: 52, cqcsr: 72, fqcsr: 76, ipsr: 84, icvec: 760 };
const PTE_V = 1n, PTE_R = 2n, PTE_W = 4n, PTE_U = 16n, PTE_A = 64n, PTE_D = 128n;
const AMO_HWAD = 1n << 24n;
const CQ_LOG2SZM1 = 7; // 256 commands in one 4 KiB page
const FQ_LOG2SZM1 = 6; // 128 records in one 4 KiB page

export class GuestDriver {
  /**
   * @param iommu   { mmioRead(offset, size), mmioWrite(offset, size, value) } (a RiscvIommu)
   * @param memory  an ioasid Iommu: `ram` (guest RAM bytes at guest-physical `ramBase`) and `memory`
   * @param heap    guest-physical range [start, end) the driver allocates its pages from
   */
  constructor(iommu, memory, heap) {
    this.iommu = iommu;
    this.memory = memory;
    this.ramBase = BigInt(memory.ramBase);
    this.next = BigInt(heap.start);
    this.end = BigInt(heap.end);
    this.contexts = new Map(); // devid -> { dc, root, pscid }
    this.nextPscid = 1;
    this.commandsSent = 0;
  }

  /** Probe and enable, as Linux's riscv_iommu_init does. */
  init() {
    const m = this.iommu;
    this.caps = m.mmioRead(REG.capabilities, 8);
    const ddtp = m.mmioRead(REG.ddtp, 8);
    if ((ddtp & 0x10n) !== 0n || (ddtp & 0xfn) > 1n) throw new Error(`ddtp busy or already in use: 0x${ddtp.toString(16)}`);
    m.mmioWrite(REG.icvec, 8, 0x10n); // civ = 0, fiv = 1
    this.cq = this.enableQueue(REG.cqb, REG.cqcsr, CQ_LOG2SZM1);
    this.cqTail = 0;
    this.fq = this.enableQueue(REG.fqb, REG.fqcsr, FQ_LOG2SZM1);
    m.mmioWrite(REG.ipsr, 4, 0x3n);
    this.ddtRoot = this.allocPage();
    const want = 4n | ((this.ddtRoot >> 12n) << 10n); // 3LVL
    m.mmioWrite(REG.ddtp, 8, want);
    if (m.mmioRead(REG.ddtp, 8) !== want) throw new Error('ddtp: 3LVL not taken');
    this.send(0x3n | (0n << 33n), 0n); // IODIR.INVAL_DDT, every device
    this.send(0x1n, 0n); // IOTINVAL.VMA, everything
    this.sync();
  }

  /** Gives `devid` a paging domain: an Sv39 table and a PSCID; the DC is written V last. */
  attach(devid) {
    const dcAddr = this.dcAddress(devid);
    const root = this.allocPage();
    const pscid = BigInt(this.nextPscid++);
    const sade = (this.caps & AMO_HWAD) !== 0n ? 1n << 8n : 0n;
    this.write64(dcAddr, sade); // tc with V = 0 (probe_device)
    this.write64(dcAddr + 24n, (8n << 60n) | (root >> 12n)); // fsc = Sv39 | root PPN
    this.write64(dcAddr + 16n, pscid << 12n); // ta = PSCID
    this.write64(dcAddr, sade | 1n); // tc.V last
    this.send(0x3n | (1n << 33n) | (BigInt(devid) << 40n), 0n); // IODIR.INVAL_DDT, this device
    this.sync();
    this.contexts.set(devid, { root, pscid });
  }

  /** Removes `devid`'s context: V = 0, IODIR, fence (Linux's blocking domain: cause 258 from then on). */
  detach(devid) {
    const dcAddr = this.dcAddress(devid);
    this.write64(dcAddr, this.read64(dcAddr) & ~1n);
    this.send(0x3n | (1n << 33n) | (BigInt(devid) << 40n), 0n);
    this.sync();
    this.contexts.delete(devid);
  }

  /** Maps the 4 KiB page `iova` of `devid` to `pa` (read-only unless `write`). */
  map(devid, iova, pa, { write = true } = {}) {
    const ctx = this.contexts.get(devid);
    const pte = this.leafSlot(ctx.root, BigInt(iova));
    const hwad = (this.caps & AMO_HWAD) !== 0n;
    const w = write ? PTE_W | (hwad ? 0n : PTE_D) : 0n;
    this.write64(pte, ((BigInt(pa) >> 12n) << 10n) | PTE_V | PTE_R | PTE_U | PTE_A | w);
    this.invalidatePage(ctx.pscid, BigInt(iova));
  }

  /** Unmaps the page `iova` of `devid`: PTE clear, IOTINVAL.VMA of that page, IOFENCE.C. */
  unmap(devid, iova) {
    const ctx = this.contexts.get(devid);
    this.write64(this.leafSlot(ctx.root, BigInt(iova)), 0n);
    this.invalidatePage(ctx.pscid, BigInt(iova));
    this.sync();
  }

  /** IOTINVAL.VMA (AV = 1, PSCV = 1) of one page: one command and one `cqt` write. */
  invalidatePage(pscid, iova) {
    this.send(0x1n | (1n << 10n) | (pscid << 12n) | (1n << 32n), (iova >> 12n) << 10n);
  }

  /** Appends a command and writes `cqt` (Linux keeps the tail in software and writes it once per command). */
  send(d0, d1) {
    const tail = this.cqTail;
    const at = this.cq + BigInt(tail * 16);
    this.write64(at, d0);
    this.write64(at + 8n, d1);
    this.cqTail = (tail + 1) % (1 << (CQ_LOG2SZM1 + 1));
    this.iommu.mmioWrite(REG.cqt, 4, this.cqTail);
    this.commandsSent++;
  }

  /** IOFENCE.C (PR = PW = 1) and a bounded poll of `cqh` until it passes the fence. */
  sync() {
    this.send(0x3002n, 0n);
    const tail = BigInt(this.cqTail);
    for (let i = 0; i < 1000; i++) if (this.iommu.mmioRead(REG.cqh, 4) === tail) return;
    throw new Error(`IOFENCE.C not completed: cqh ${this.iommu.mmioRead(REG.cqh, 4)}, cqcsr 0x${this.iommu.mmioRead(REG.cqcsr, 4).toString(16)}`);
  }

  /** Drains the fault queue: each record's cause, device_id, iotval; clears `fip` first as Linux does. */
  drainFaults() {
    const m = this.iommu;
    m.mmioWrite(REG.ipsr, 4, 0x2n);
    const out = [];
    let head = Number(m.mmioRead(REG.fqh, 4));
    const tail = Number(m.mmioRead(REG.fqt, 4));
    while (head !== tail) {
      const at = this.fq + BigInt(head * 32);
      const hdr = this.read64(at);
      out.push({ cause: Number(hdr & 0xfffn), devid: Number(hdr >> 40n), iotval: this.read64(at + 16n), iotval2: this.read64(at + 24n) });
      head = (head + 1) % (1 << (FQ_LOG2SZM1 + 1));
      m.mmioWrite(REG.fqh, 4, BigInt(head));
    }
    return out;
  }

  enableQueue(baseReg, csrReg, log2szm1) {
    const m = this.iommu;
    const page = this.allocPage();
    const base = ((page >> 12n) << 10n) | BigInt(log2szm1);
    m.mmioWrite(baseReg, 8, base);
    if (m.mmioRead(baseReg, 8) !== base) throw new Error(`queue base at ${baseReg} not taken`);
    m.mmioWrite(csrReg, 4, 0x103n);
    const csr = m.mmioRead(csrReg, 4);
    if (csr !== 0x10003n) throw new Error(`queue at ${csrReg} not on: csr 0x${csr.toString(16)}`);
    return page;
  }

  /** The DC slot of `devid` in the 3-level base-format DDT, allocating directory pages on the way. */
  dcAddress(devid) {
    let table = this.ddtRoot;
    for (const [shift, mask] of [[16, 0xff], [7, 0x1ff]]) {
      const slot = table + BigInt(((devid >> shift) & mask) * 8);
      let e = this.read64(slot);
      if ((e & 1n) === 0n) {
        e = ((this.allocPage() >> 12n) << 10n) | 1n;
        this.write64(slot, e);
      }
      table = ((e >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    return table + BigInt((devid & 0x7f) * 32);
  }

  /** The Sv39 leaf slot of `iova` under `root`, allocating table pages on the way. */
  leafSlot(root, iova) {
    let table = root;
    for (const shift of [30n, 21n]) {
      const slot = table + ((iova >> shift) & 0x1ffn) * 8n;
      let e = this.read64(slot);
      if ((e & PTE_V) === 0n) {
        e = ((this.allocPage() >> 12n) << 10n) | PTE_V;
        this.write64(slot, e);
      }
      table = ((e >> 10n) & ((1n << 44n) - 1n)) << 12n;
    }
    return table + ((iova >> 12n) & 0x1ffn) * 8n;
  }

  allocPage() {
    const p = this.next;
    if (p + 4096n > this.end) throw new Error('guest driver: out of table pages');
    this.next += 4096n;
    this.memory.ram.fill(0, Number(p - this.ramBase), Number(p - this.ramBase) + 4096);
    return p;
  }

  view() {
    // Re-made only when the engine memory grew (which replaces its buffer).
    if (!this.dv || this.dv.buffer !== this.memory.memory.buffer) {
      const ram = this.memory.ram;
      this.dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
    }
    return this.dv;
  }

  read64(addr) {
    return this.view().getBigUint64(Number(addr - this.ramBase), true);
  }

  write64(addr, v) {
    this.view().setBigUint64(Number(addr - this.ramBase), v, true);
  }
}
