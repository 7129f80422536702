/**
 * Replays RISC-V walk vectors (results of the RISC-V IOMMU reference model; see
 * test/nested-riscv-vectors.test.ts) through the public API: one engine per
 * case with the case's RAM, the G stage as a user-managed nest-parent HWPT, stage 1 nested on it
 * (a bare stage is simply absent: stage 1 alone is a guest-physical HWPT, G stage alone is attached
 * directly), every request after invalidating every cache, compared with the expectation and with
 * the PTE words the walk must have written (read back from the caller's view of its RAM, wherever
 * the mode puts it: test/ram-modes.ts).
 *
 * Nothing here knows a case by name: the same code replays any vector file generated the same way.
 */
import { Access, NO_PASID, type Translation } from '../../src/index';
import { createInMode, type RamMode } from '../ram-modes';

export interface VectorFile {
  generator: string;
  capabilities: Caps;
  cases: VectorCase[];
}

interface Caps {
  svpbmt: boolean;
  svnapot: boolean;
  svrsw60t59b: boolean;
  paBits: number;
}

interface Stage {
  format: string;
  root: string;
}

export interface VectorCase {
  name: string;
  tags: string[];
  stage1: Stage;
  stage2: Stage;
  hwAD: { stage1: boolean; stage2: boolean };
  sum: boolean;
  ram: { base: string; bytes: string };
  capabilities?: Partial<Caps>;
  memory: [string, string][];
  requests: VectorRequest[];
}

interface VectorRequest {
  iova: string;
  access: 'read' | 'write' | 'exec';
  priv: 'user' | 'supervisor';
  expect: {
    ok: boolean;
    pa?: string;
    size?: string;
    perm?: string;
    pbmt?: 'pma' | 'nc' | 'io';
    cause?: number;
    stage?: number;
    iotval2?: string;
  };
  writes?: [string, string][];
}

export interface CaseResult {
  name: string;
  tags: string[];
  passed: boolean;
  requests: number;
  /** The first mismatch, described. */
  problem?: string;
}

const ACCESS = { read: Access.Read, write: Access.Write, exec: Access.Exec } as const;
const PBMT = { pma: 0, nc: 1, io: 2 } as const;
/** Our fault reasons that a RISC-V page fault or guest-page fault may be. */
const PAGE_FAULT_REASONS = new Set(['not-present', 'permission', 'reserved', 'misaligned', 'non-canonical', 'ad-disabled', 'beyond-width']);

const permBits = (s: string): number => (s.includes('r') ? 1 : 0) | (s.includes('w') ? 2 : 0) | (s.includes('x') ? 4 : 0);
const hex = (v: bigint): string => `0x${v.toString(16)}`;

function describeResult(t: Translation): string {
  if (t.ok) return `ok pa=${hex(t.phys)} size=${hex(t.size)} perm=${t.perm} pbmt=${t.pbmt ?? 0}`;
  const f = t.fault!;
  return `fault ${f.reason} stage=${f.stage} level=${f.level}${f.implicit ? ' implicit' : ''}${f.implicitWrite ? ' implicit-write' : ''}${f.addr !== undefined ? ` addr=${hex(f.addr)}` : ''}`;
}

/** Compares one translation with an expectation; returns a description of the difference, or undefined. */
function compare(t: Translation, e: VectorRequest['expect']): string | undefined {
  if (e.ok) {
    if (!t.ok) return 'expected a translation';
    if (t.phys !== BigInt(e.pa!)) return 'pa differs';
    if (t.size !== BigInt(e.size!)) return 'size differs';
    if (t.perm !== permBits(e.perm!)) return 'perm differs';
    if ((t.pbmt ?? 0) !== PBMT[e.pbmt ?? 'pma']) return 'pbmt differs';
    return undefined;
  }
  if (t.ok) return 'expected a fault';
  const f = t.fault!;
  const cause = e.cause!;
  if (cause === 1 || cause === 5 || cause === 7) {
    return f.reason === 'outside-ram' ? undefined : 'expected an access fault (outside-ram)';
  }
  if (!PAGE_FAULT_REASONS.has(f.reason)) return `reason ${f.reason} is not a page fault`;
  const stage = cause >= 20 ? 2 : 1;
  if (f.stage !== stage) return `stage ${f.stage}, expected ${stage}`;
  if (stage === 2) {
    const iotval2 = BigInt(e.iotval2 ?? '0x0');
    const implicit = (iotval2 & 1n) !== 0n;
    const implicitWrite = (iotval2 & 2n) !== 0n;
    if (!!f.implicit !== implicit) return `implicit ${!!f.implicit}, expected ${implicit}`;
    if (!!f.implicitWrite !== implicitWrite) return `implicit write ${!!f.implicitWrite}, expected ${implicitWrite}`;
    const addr = f.addr ?? 0n;
    // Implicit: the GPA of the stage-1 table page (page offset 0 in the vectors); final: the GPA.
    const got = implicit ? addr & ~0xfffn : addr & ~3n;
    if (got !== (iotval2 & ~3n)) return `fault GPA ${hex(addr)}, expected ${hex(iotval2)}`;
  }
  return undefined;
}

/** Replays one case on a fresh engine with its RAM in `mode` (test/ram-modes.ts). */
export function replayCase(c: VectorCase, defaults: Caps, mode: RamMode = 'engine'): CaseResult {
  const caps = { ...defaults, ...(c.capabilities ?? {}) };
  const base = BigInt(c.ram.base);
  const bytes = Number(BigInt(c.ram.bytes));
  const { iommu, rams: [ram] } = createInMode(mode, { base, bytes }, { translators: 1, iotlbEntries: 64, maxDomains: 8, maxMemoryBytes: bytes + 8 * 2 ** 20 });
  if (!ram) throw new Error('no RAM window');
  const view = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  /** Expected memory image: address -> word, for every word that is or was nonzero. */
  const image = new Map<bigint, bigint>();
  for (const [a, v] of c.memory) {
    const addr = BigInt(a);
    view.setBigUint64(Number(addr - base), BigInt(v), true);
    image.set(addr, BigInt(v));
  }
  const dev = iommu.addDevice({ bdf: '00:01.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const features = { svpbmt: caps.svpbmt, svnapot: caps.svnapot, svrsw60t59b: caps.svrsw60t59b, paBits: caps.paBits };
  const hwpts: number[] = [];
  let s2: number | undefined;
  if (c.stage2.format !== 'bare') {
    s2 = fd.hwptAlloc({ devId, nestParent: true, table: { format: c.stage2.format as 'sv39x4', root: BigInt(c.stage2.root), hwAccessDirty: c.hwAD.stage2, features } });
    hwpts.push(s2);
  }
  let s1: number | undefined;
  if (c.stage1.format !== 'bare') {
    s1 = fd.hwptAlloc({ devId, ...(s2 !== undefined ? { ptId: s2 } : {}), table: { format: c.stage1.format as 'sv39', root: BigInt(c.stage1.root), hwAccessDirty: c.hwAD.stage1, sum: c.sum, features } });
    hwpts.push(s1);
  }
  const top = s1 ?? s2;
  if (top === undefined) return { name: c.name, tags: c.tags, passed: false, requests: 0, problem: 'both stages bare' };
  dev.attach(top);

  let n = 0;
  for (const r of c.requests) {
    n++;
    for (const h of hwpts) fd.hwptInvalidate(h, [{}]);
    const access = ACCESS[r.access] | (r.priv === 'supervisor' ? Access.Priv : 0);
    const t = iommu.translate(dev.rid, NO_PASID, BigInt(r.iova), access);
    const where = `request ${n} (${r.access} ${r.priv} ${r.iova})`;
    const diff = compare(t, r.expect);
    if (diff) {
      fd.close();
      return { name: c.name, tags: c.tags, passed: false, requests: n, problem: `${where}: ${diff}; got ${describeResult(t)}, expected ${JSON.stringify(r.expect)}` };
    }
    for (const [a, v] of r.writes ?? []) image.set(BigInt(a), BigInt(v));
    for (const [addr, want] of image) {
      const got = view.getBigUint64(Number(addr - base), true);
      if (got !== want) {
        fd.close();
        return { name: c.name, tags: c.tags, passed: false, requests: n, problem: `${where}: word ${hex(addr)} = ${hex(got)}, expected ${hex(want)} (A/D writes ${JSON.stringify(r.writes ?? [])})` };
      }
    }
  }
  // Nothing else in RAM may have been written: every word outside the image is still zero.
  const words = new BigUint64Array(ram.buffer, ram.byteOffset, ram.byteLength / 8);
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== 0n && !image.has(base + BigInt(i * 8))) {
      fd.close();
      return { name: c.name, tags: c.tags, passed: false, requests: n, problem: `stray write: word ${hex(base + BigInt(i * 8))} = ${hex(words[i]!)}` };
    }
  }
  fd.close();
  return { name: c.name, tags: c.tags, passed: true, requests: n };
}

/** Replays every case of a vector file with RAM in `mode`. */
export function replayFile(v: VectorFile, mode: RamMode = 'engine'): CaseResult[] {
  return v.cases.map((c) => {
    try {
      return replayCase(c, v.capabilities, mode);
    } catch (e) {
      return { name: c.name, tags: c.tags, passed: false, requests: 0, problem: `threw ${(e as Error).message}` };
    }
  });
}
