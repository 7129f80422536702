// A worker translator for test/ram-windows.test.ts: attaches to an engine whose guest RAM is in an
// emulator's memory or in SharedArrayBuffers, translates a write (the walk sets A/D bits in the
// caller's RAM by compare-and-swap), DMA-writes 16 bytes and reads them back.
import { parentPort, workerData } from 'node:worker_threads';
import { Translator, Access } from '../../dist/index.js';

const { handle, rid, iova } = workerData;
const translator = Translator.attach(handle);
const t = translator.translate(rid, 0, iova, Access.Write);
const data = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const wrote = translator.dmaWrite(rid, 0, iova, data).bytes;
const back = new Uint8Array(16);
translator.dmaRead(rid, 0, iova, back);
parentPort.postMessage({ phys: `0x${t.phys.toString(16)}`, wrote, read: [...back] });
