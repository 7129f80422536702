/**
 * The owner side of the concurrency soak (test/soak.test.ts, scripts/soak.mjs): random control ops
 * from the fuzz generator, each checked against the reference model, while worker translators
 * (test/workers/soak-worker.mjs) translate a fixed set of probes concurrently.
 *
 * Protocol (extends test/concurrency.test.ts's versions): op number v is version v. Before the
 * engine call, the owner appends to each probe's history ring the model's result for that probe
 * after v, if it changes; then `started = v`; then the call; then `returned = v`. A worker reads
 * `returned` (r0) before a translation and (r1) after it: the result must be the probe's state at
 * r0 or one set by a version in (r0, r1 + 1] — older is stale-after-return, anything else torn.
 * @module
 */
import { Gen } from './gen';
import { EngineSide, type EngineApi, type EngineConfig } from './harness';
import { Model } from './model';
import { runModel, show, type Op } from './ops';
import { Rng } from './rng';

/** Control words (Int32Array over `control`). */
export const CTL_STOP = 0;
export const CTL_RETURNED = 1;
export const CTL_STARTED = 2;
export const CTL_READY = 3;

/** Entries per probe history ring (version, result) — far more than a worker ever lags behind. */
export const HISTORY_CAP = 2048;

const FAULTS = ['none', 'bad-request', 'no-device', 'not-attached', 'pasid-invalid', 'beyond-width', 'not-present', 'permission'];

/** A translation as one float: 1 + phys*8 + perm when it succeeds, -(1 + reason index) for a fault. */
export function encode(ok: boolean, phys: number, perm: number, reason: number): number {
  return ok ? 1 + phys * 8 + perm : -(1 + reason);
}

/** What a worker needs (all structured-cloneable). */
export interface SoakShared {
  control: SharedArrayBuffer;
  /** Float64 pairs (version, encoded result), HISTORY_CAP per probe. */
  history: SharedArrayBuffer;
  /** Int32 entries written per probe (monotonic; slot = count % HISTORY_CAP). */
  counts: SharedArrayBuffer;
  /** Probes as [rid, pasid, iova (number, < 2^53)]. */
  probes: [number, number, number][];
}

const CFG: EngineConfig = { addressWidth: 48, pasidBits: 8, maxDomains: 64, iotlbEntries: 256, shared: true, maxMemoryBytes: 128 * 2 ** 20 };

export class SoakOwner {
  readonly model: Model;
  readonly engine: EngineSide;
  readonly shared: SoakShared;
  private readonly gen: Gen;
  private readonly rng: Rng;
  private readonly ctl: Int32Array;
  private readonly hist: Float64Array;
  private readonly counts: Int32Array;
  private readonly last: number[];
  version = 0;
  /** Ops that succeeded / failed with an errno, for the report. */
  readonly outcomes = { ok: 0, errno: 0 };

  constructor(api: EngineApi, seed: number, translators = 4) {
    this.model = new Model(CFG);
    this.engine = new EngineSide(api, { ...CFG }, translators);
    const rng = new Rng(seed);
    this.rng = new Rng(seed ^ 0x2545f491);
    this.gen = new Gen(rng, this.model, {
      narrow: true, inject: 0,
      // No snapshots or translator handles: the soak's own workers translate over this engine.
      weights: { translate: 0, inspect: 0, ranges: 0.3, addDevice: 0, close: 0.08, open: 0.3, map: 30, unmap: 10, attach: 9, detach: 3, destroy: 2, snapshot: 0, handle: 0, release: 0 },
    });
    const setup: Op[] = [
      { k: 'open' },
      { k: 'addDevice', bdf: '00:04.0' },
      { k: 'addDevice', bdf: '00:05.0' },
      { k: 'addDevice', bdf: '01:00.0', pasidBits: 0 },
      { k: 'ioasAlloc', fd: 0 },
      { k: 'bind', dev: 0, fd: 0 },
      { k: 'bind', dev: 1, fd: 0 },
      { k: 'bind', dev: 2, fd: 0 },
      { k: 'hwptAlloc', fd: 0, devId: 2, ptId: 1, pasid: true },
      { k: 'attach', dev: 0, pt: 5 },
      { k: 'pasidAlloc', fd: 0 },
      { k: 'attach', dev: 0, pt: 5, pasid: 1 },
      { k: 'attach', dev: 2, pt: 1 },
    ];
    for (const op of setup) {
      const m = runModel(this.model, op);
      const e = this.engine.run(op);
      if (show(m) !== show(e)) throw new Error(`soak setup diverged at ${show(op)}: engine ${show(e)}, model ${show(m)}`);
    }
    const probes: [number, number, number][] = [];
    for (const d of this.model.devices) {
      for (const pasid of d.pasidBits > 0 ? [0, 1] : [0]) {
        for (let k = 0; k < 64; k += 5) probes.push([d.rid, pasid, 0x10_0000 + k * 4096 + 0x18]);
      }
    }
    this.shared = {
      control: new SharedArrayBuffer(16),
      history: new SharedArrayBuffer(probes.length * HISTORY_CAP * 16),
      counts: new SharedArrayBuffer(probes.length * 4),
      probes,
    };
    this.ctl = new Int32Array(this.shared.control);
    this.hist = new Float64Array(this.shared.history);
    this.counts = new Int32Array(this.shared.counts);
    this.last = probes.map(() => Number.NaN);
    this.record(0);
  }

  /** Appends the model's result of every probe that changed, as of version `v`. */
  private record(v: number): void {
    const probes = this.shared.probes;
    for (let p = 0; p < probes.length; p++) {
      const [rid, pasid, iova] = probes[p]!;
      const t = this.model.translate(rid, pasid, BigInt(iova), 1);
      const enc = t.ok ? encode(true, Number(t.phys), t.perm, 0) : encode(false, 0, 0, FAULTS.indexOf(t.reason));
      if (enc === this.last[p]) continue;
      this.last[p] = enc;
      const n = this.counts[p]!;
      const at = (p * HISTORY_CAP + (n % HISTORY_CAP)) * 2;
      this.hist[at] = v;
      this.hist[at + 1] = enc;
      Atomics.store(this.counts, p, n + 1);
    }
  }

  /**
   * The next op: usually the generator's; sometimes one that brings a device back into play (bind
   * it, attach its RID to an IOAS with mappings), so that the probes keep translating.
   */
  private pick(): Op {
    const m = this.model;
    if (this.rng.chance(0.2)) {
      const open = m.fds.flatMap((f, i) => (f.closed ? [] : [i]));
      const devs = m.devices.map((d, i) => [d, i] as const);
      const unbound = devs.filter(([d]) => !d.fd);
      if (unbound.length > 0 && open.length > 0) return { k: 'bind', dev: this.rng.pick(unbound)[1], fd: this.rng.pick(open) };
      const idle = devs.filter(([d]) => d.fd && !d.att.has(0));
      if (idle.length > 0) {
        const [d, i] = this.rng.pick(idle);
        const targets = [...d.fd!.objs.values()].filter((o) => o.type === 'ioas' && o.areas.length > 0);
        if (targets.length > 0) return { k: 'attach', dev: i, pt: this.rng.pick(targets).id };
      }
    }
    return this.gen.next();
  }

  /** One control op: model first (history published), then the engine; returns a divergence, if any. */
  step(): string | undefined {
    const op = this.pick();
    const v = this.version + 1;
    const mo = runModel(this.model, op);
    this.record(v);
    Atomics.store(this.ctl, CTL_STARTED, v);
    let eo;
    try {
      eo = this.engine.run(op);
    } catch (e) {
      return `version ${v} ${show(op)}: engine threw ${(e as Error).stack}`;
    }
    Atomics.store(this.ctl, CTL_RETURNED, v);
    this.version = v;
    if (show(eo) !== show(mo)) return `version ${v} ${show(op)}: engine ${show(eo)}, model ${show(mo)}`;
    if ('e' in mo) this.outcomes.errno++;
    else this.outcomes.ok++;
    return undefined;
  }

  stop(): void {
    Atomics.store(this.ctl, CTL_STOP, 1);
  }
}
