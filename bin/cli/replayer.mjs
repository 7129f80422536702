// Applies parsed trace records (trace.mjs) to an IOMMU: setup records through the iommufd API (one
// ioasid FD; one IOAS per named space, each with one PASID-capable HWPT made on its first device),
// DMA records through a batch ring, flushed before every setup record so the trace's order holds.
// Tallies translations and faults by reason, in all and per requester ID.
import { FAULT_REASONS, NO_PASID } from '../../dist/index.js';
import { bdfOf } from './trace.mjs';

const newTally = () => ({ requests: 0, translated: 0, faults: 0, faultsByReason: {} });

export class Replayer {
  /** @param iommu an `Iommu`; @param batchSize requests per Wasm call */
  constructor(iommu, batchSize = 4096) {
    this.iommu = iommu;
    this.fd = iommu.open();
    this.batch = iommu.batch(batchSize);
    this.rids = new Uint32Array(batchSize);
    this.pending = 0;
    this.requestWords = undefined;
    /** name → { ioas, hwpt } */
    this.spaces = new Map();
    this.space = undefined;
    /** rid → DeviceFd, for the devices the trace declared */
    this.devices = new Map();
    this.total = newTally();
    /** rid → tally */
    this.byRid = new Map();
    this.engineMs = 0;
    this.setupRecords = 0;
    this.select('default');
  }

  /** Applies one record. @throws IommuError from a setup record (nothing changed by it). */
  apply(record) {
    if (record.kind === 'dma') return this.dma(record);
    this.flush();
    this.setupRecords++;
    if (record.kind === 'space') return this.select(record.name);
    const { ioas } = this.space;
    if (record.kind === 'map') {
      this.fd.ioasMap(ioas, { iova: record.iova, length: record.length, phys: record.phys, read: record.read, write: record.write });
    } else if (record.kind === 'unmap') {
      this.fd.ioasUnmap(ioas, record.iova, record.length);
    } else {
      this.attach(record.rid, record.pasid);
    }
  }

  select(name) {
    if (!this.spaces.has(name)) this.spaces.set(name, { ioas: this.fd.ioasAlloc(), hwpt: undefined });
    this.space = this.spaces.get(name);
  }

  attach(rid, pasid) {
    let dev = this.devices.get(rid);
    if (!dev) {
      dev = this.iommu.addDevice({ bdf: bdfOf(rid) });
      dev.bind(this.fd);
      this.devices.set(rid, dev);
    }
    const space = this.space;
    space.hwpt ??= this.fd.hwptAlloc({ devId: dev.devId, ptId: space.ioas, pasid: true });
    if (pasid === NO_PASID) {
      dev.attach(space.hwpt);
    } else {
      if (!this.fd.pasids().includes(pasid)) this.fd.pasidAlloc({ pasid });
      dev.attach(space.hwpt, { pasid });
    }
  }

  dma({ rid, pasid, iovaLo, iovaHi, access }) {
    // Request words as the batch layout defines them: rid | access << 16, pasid, iova lo, iova hi.
    const words = (this.requestWords ??= this.batch.requests);
    const at = this.pending * 4;
    words[at] = rid | (access << 16);
    words[at + 1] = pasid;
    words[at + 2] = iovaLo;
    words[at + 3] = iovaHi;
    this.rids[this.pending++] = rid;
    if (this.pending === this.batch.capacity) this.flush();
  }

  /** Translates the pending requests and tallies their results. */
  flush() {
    const n = this.pending;
    this.pending = 0;
    this.requestWords = undefined; // a setup call may grow (and so replace) an unshared memory
    if (n === 0) return;
    const { batch } = this;
    const started = performance.now();
    batch.run(n);
    this.engineMs += performance.now() - started;
    for (let i = 0; i < n; i++) {
      const rid = this.rids[i];
      let tally = this.byRid.get(rid);
      if (!tally) this.byRid.set(rid, (tally = newTally()));
      tally.requests++;
      this.total.requests++;
      if (batch.ok(i)) {
        tally.translated++;
        this.total.translated++;
      } else {
        const reason = FAULT_REASONS[batch.reason(i)];
        for (const t of [tally, this.total]) {
          t.faults++;
          t.faultsByReason[reason] = (t.faultsByReason[reason] ?? 0) + 1;
        }
      }
    }
  }

  /** The statistics so far (call flush() first for the last partial batch). */
  result() {
    const engine = this.iommu.stats();
    const devices = [...this.byRid]
      .sort(([a], [b]) => a - b)
      .map(([rid, t]) => ({ rid, bdf: bdfOf(rid), declared: this.devices.has(rid), ...t }));
    return {
      setupRecords: this.setupRecords,
      ...this.total,
      devices,
      engineSeconds: this.engineMs / 1000,
      engine: { hits: engine.hits, misses: engine.misses, tablePages: engine.tablePages },
    };
  }
}
