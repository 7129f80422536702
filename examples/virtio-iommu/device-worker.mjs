// An endpoint's device model on its own thread: its own translator over the engine memory, DMA
// through it (dmaWrite / dmaRead, translated leaf by leaf), and its translation faults sent back
// with each answer so the owner can hand them to the virtio-iommu's event queue.
import { parentPort, workerData } from 'node:worker_threads';
import { NO_PASID, Translator } from 'ioasid';

const { handle, rid, tag } = workerData;
const translator = Translator.attach(handle);

parentPort.on('message', (job) => {
  if (job === 'stop') {
    parentPort.postMessage({ stats: translator.stats() });
    parentPort.close();
    return;
  }
  const results = job.ops.map((op) => {
    const data = new Uint8Array(op.length);
    let r;
    if (op.kind === 'write') {
      data.fill(tag);
      new DataView(data.buffer).setUint32(0, op.seq, true);
      r = translator.dmaWrite(rid, NO_PASID, op.iova, data);
    } else {
      r = translator.dmaRead(rid, NO_PASID, op.iova, data);
    }
    return { bytes: r.bytes, faulted: r.fault !== undefined, first: data[op.length - 1] };
  });
  parentPort.postMessage({ id: job.id, results, faults: translator.faults.drain() });
});
