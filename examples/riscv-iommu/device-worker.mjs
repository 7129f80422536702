// A PCI device on its own thread: DMA through its own translator over the engine's shared memory
// (no call into the device model). It writes its tag into each page it is told to, reads it back,
// and reports every transfer; a fault comes back as a value, which the main thread hands to the
// IOMMU model so that the guest sees it in its fault queue.
import { parentPort, workerData } from 'node:worker_threads';
import { NO_PASID, Translator } from 'ioasid';

const { handle, rid, tag } = workerData;
const translator = Translator.attach(handle);

parentPort.on('message', ({ iovas, stop }) => {
  if (stop) {
    parentPort.close();
    return;
  }
  const results = iovas.map((iova) => {
    const data = new Uint8Array(64).fill(tag);
    const w = translator.dmaWrite(rid, NO_PASID, BigInt(iova), data);
    const back = new Uint8Array(64);
    const r = w.fault ? w : translator.dmaRead(rid, NO_PASID, BigInt(iova), back);
    return { iova, bytes: w.bytes, fault: w.fault?.reason, readBack: !r.fault && back.every((b) => b === tag) };
  });
  parentPort.postMessage(results);
});
