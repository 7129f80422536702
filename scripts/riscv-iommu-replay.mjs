// Replays RISC-V IOMMU register-level vectors (the format of the reference model's vector files:
// cases of `mem`, `write`, `read` and `translate` steps) through RiscvIommu. The library is passed
// in, so the same code runs over dist/ (`npm run vectors`) and over src/ (the vitest test).
//
// Checks, per step: a read's value, a request's status/pa/size/pbmt (size and pbmt when the vector
// gives them), and that every word in the step's `writes` holds its value afterwards. Per case: at
// the end every word of RAM equals the zero image with all `mem` steps and all `writes` applied —
// the device wrote nothing else.

const ACCESS_BITS = { read: 1, write: 2, exec: 4 };
const PRIV = 8;
const hex = (v) => `0x${v.toString(16)}`;

/** Where a case's guest RAM lives (README "Embedding in an emulator"). */
export const RAM_MODES = ['engine', 'memory', 'external'];

const ENGINE_BYTES = 64 * 2 ** 20;
const WASM_PAGE = 65536;
/** ioasid's region in the emulator's memory: it zeroes the whole region at creation, so no larger than needed. */
const REGION_BYTES = 8 * 2 ** 20;

/**
 * An engine whose guest RAM is `[base, base + bytes)` in `mode`: inside ioasid's memory
 * (`engine`), in a caller-owned WebAssembly.Memory that ioasid runs in a region of (`memory`), or in
 * a SharedArrayBuffer ioasid does not own (`external`). @returns the engine and the caller's own
 * view of the RAM, through which the guest writes and the checks read (not through ioasid).
 */
function createEngine(lib, mode, base, bytes) {
  // A large IOTLB: a translation the reference model still has cached must not be evicted by a
  // set conflict here (the engine's IOTLB is 2-way set associative).
  const common = { translators: 1, iotlbEntries: 1 << 16 };
  if (mode === 'engine') {
    const iommu = lib.Iommu.createSync({ ...common, ram: { base, bytes }, maxMemoryBytes: bytes + ENGINE_BYTES, shared: false });
    return { iommu, ram: () => iommu.ram };
  }
  if (mode === 'external') {
    const buffer = new SharedArrayBuffer(bytes);
    const iommu = lib.Iommu.createSync({ ...common, ram: [{ base, buffer, bytes }], maxMemoryBytes: ENGINE_BYTES, shared: false });
    const view = new Uint8Array(buffer);
    return { iommu, ram: () => view };
  }
  if (mode !== 'memory') throw new Error(`unknown RAM mode '${mode}' (expected ${RAM_MODES.join(', ')})`);
  // The emulator's memory: its own page first, then ioasid's region, then guest RAM.
  const region = { offset: WASM_PAGE, bytes: REGION_BYTES };
  const offset = region.offset + region.bytes;
  const memory = new WebAssembly.Memory({ initial: (offset + bytes) / WASM_PAGE });
  const iommu = lib.Iommu.createSync({ ...common, memory, region, ram: [{ base, offset, bytes }] });
  return { iommu, ram: () => new Uint8Array(memory.buffer, offset, bytes) };
}

/**
 * Replays one case with guest RAM in `mode` (default `engine`). @returns { name, tags, passed,
 * steps: { [op]: [passed, total] }, problem? } (`problem` names the first mismatching step).
 */
export function replayCase(lib, c, mode = 'engine') {
  const base = BigInt(c.ram.base);
  const bytes = Number(BigInt(c.ram.bytes));
  const { iommu, ram } = createEngine(lib, mode, base, bytes);
  const dev = new lib.RiscvIommu(iommu, { capabilities: BigInt(c.capabilities), fctl: Number(BigInt(c.fctl)) });
  const image = new Map();
  const steps = {};
  let problem;
  const view = () => new DataView(ram().buffer, ram().byteOffset, ram().byteLength);
  const word = (a) => view().getBigUint64(Number(a - base), true);
  c.steps.forEach((s, i) => {
    let diff;
    try {
      diff = runStep(dev, s, view, base);
      if (!diff && s.writes) {
        for (const [a, v] of s.writes) {
          image.set(BigInt(a), BigInt(v));
          const got = word(BigInt(a));
          if (got !== BigInt(v)) diff ??= `word ${a} = ${hex(got)}, expected ${v}`;
        }
      }
      if (s.op === 'mem') image.set(BigInt(s.addr), BigInt(s.value));
    } catch (e) {
      diff = `threw ${e?.stack ?? e}`;
    }
    const tally = (steps[s.op] ??= [0, 0]);
    tally[1]++;
    if (diff) problem ??= `step ${i} (${describe(s)}): ${diff}`;
    else tally[0]++;
  });
  const stray = strayWrite(ram(), base, image);
  if (stray) problem ??= `end of case: ${stray}`;
  return { name: c.name, tags: c.tags, passed: problem === undefined, steps, problem };
}

function runStep(dev, s, view, base) {
  switch (s.op) {
    case 'mem':
      view().setBigUint64(Number(BigInt(s.addr) - base), BigInt(s.value), true);
      return undefined;
    case 'write':
      dev.mmioWrite(s.offset, s.size, BigInt(s.value));
      return undefined;
    case 'read': {
      const got = dev.mmioRead(s.offset, s.size);
      return got === BigInt(s.expect) ? undefined : `read ${hex(got)}, expected ${s.expect}`;
    }
    case 'translate': {
      const r = s.req;
      const access = ACCESS_BITS[r.access] | (r.priv ? PRIV : 0);
      const got = dev.translate(r.devid, requestPid(s), BigInt(r.iova), access);
      const e = s.expect;
      const bad = got.status !== e.status
        || (e.pa !== undefined && got.pa !== BigInt(e.pa))
        || (e.size !== undefined && got.size !== BigInt(e.size))
        || (e.pbmt !== undefined && got.pbmt !== e.pbmt);
      return bad ? `got ${JSON.stringify(got, (_, v) => (typeof v === 'bigint' ? hex(v) : v))}, expected ${JSON.stringify(e)}` : undefined;
    }
    default:
      return `unknown op ${s.op}`;
  }
}

/**
 * The request's process_id. The reference model's files write a request that carried no
 * process_id, sent to a context with DPE (which supplies process_id 0), as `pid: 0`; its fault
 * record then says PV=0. Such a request is replayed without a process_id. (Where no record is
 * expected the two readings translate alike: DPE makes the missing process_id 0.)
 */
function requestPid(s) {
  const pid = s.req.pid;
  if (pid !== 0 || !s.writes) return pid;
  const header = s.writes.find(([, v]) => (BigInt(v) & 0xfffn) >= 1n && (BigInt(v) >> 40n) === BigInt(s.req.devid) && ((BigInt(v) >> 34n) & 0x3fn) !== 0n);
  return header && ((BigInt(header[1]) >> 32n) & 1n) === 0n ? undefined : pid;
}

function describe(s) {
  if (s.op === 'translate') return `translate ${JSON.stringify(s.req)}`;
  if (s.op === 'mem') return `mem ${s.addr}`;
  return `${s.op} ${s.reg} (${s.offset}, ${s.size})${s.value !== undefined ? ` = ${s.value}` : ''}`;
}

/** The first word of RAM that differs from the expected image, described; undefined when none. */
function strayWrite(ram, base, image) {
  const u32 = new Uint32Array(ram.buffer, ram.byteOffset, ram.byteLength >>> 2);
  for (let i = 0; i < u32.length; i += 2) {
    if ((u32[i] | u32[i + 1]) === 0) continue;
    const addr = base + BigInt(i * 4);
    const got = (BigInt(u32[i + 1]) << 32n) | BigInt(u32[i]);
    if (image.get(addr) !== got) return `word ${hex(addr)} = ${hex(got)}, expected ${hex(image.get(addr) ?? 0n)}`;
  }
  for (const [addr, want] of image) {
    const at = Number(addr - base) >>> 2;
    const got = (BigInt(u32[at + 1]) << 32n) | BigInt(u32[at]);
    if (got !== want) return `word ${hex(addr)} = ${hex(got)}, expected ${hex(want)}`;
  }
  return undefined;
}

/** Replays every case of a parsed vector file. */
export function replayFile(lib, vectors, mode = 'engine') {
  return vectors.cases.map((c) => replayCase(lib, c, mode));
}

/** Pass counts per tag and per step kind, as printable lines. */
export function summarize(results) {
  const tags = new Map();
  const kinds = new Map();
  for (const r of results) {
    for (const t of r.tags) {
      const v = tags.get(t) ?? [0, 0];
      v[0] += r.passed ? 1 : 0;
      v[1]++;
      tags.set(t, v);
    }
    for (const [op, [ok, n]] of Object.entries(r.steps)) {
      const v = kinds.get(op) ?? [0, 0];
      v[0] += ok;
      v[1] += n;
      kinds.set(op, v);
    }
  }
  const passed = results.filter((r) => r.passed).length;
  const lines = [`cases: ${passed}/${results.length} passed`];
  for (const [op, [ok, n]] of [...kinds].sort()) lines.push(`  step ${op}: ${ok}/${n}`);
  for (const [t, [ok, n]] of [...tags].sort()) lines.push(`  tag ${t}: ${ok}/${n}`);
  const first = results.find((r) => !r.passed);
  if (first) lines.push(`first mismatch: case ${first.name}, ${first.problem}`);
  return lines;
}
