/**
 * User-managed HWPTs: page tables a guest (or an emulated vIOMMU) keeps in guest RAM, walked by the
 * engine in place (iommufd's HWPT_NESTED, and the physical single stage of an emulated IOMMU).
 *
 * - With `ptId` naming a nest-parent HWPT it is nested ('hwpt-nested'): table addresses and outputs
 *   are GPAs translated by the parent — an engine-managed HWPT_PAGING allocated with `nestParent`,
 *   or a user-managed G-stage table allocated with `nestParent` (e.g. `sv39x4`).
 * - Without `ptId` ('hwpt-user') table addresses and outputs are guest-physical: one stage of an
 *   emulated IOMMU, or, with `nestParent`, a guest-programmed G stage for nested children.
 *
 * Lifetime (Linux Documentation/userspace-api/iommufd.rst, IOMMUFD_OBJ_HWPT_NESTED; the
 * selftest's alloc_hwpt_nested, tools/testing/selftests/iommu/iommufd.c): a child holds a reference on its parent (destroying
 * the parent is EBUSY), a HWPT on its fault queue; nested on nested is EINVAL; attachments hold a
 * reference on the HWPT. The engine never writes the tables except for A/D updates, and caches
 * translations until `hwptInvalidate` (as hardware does).
 *
 * Formats (assembly/fmt/): 'x86-64' (VT-d first stage / AMD v2; `levels` 4 or 5), 'sv39', 'sv48',
 * 'sv57' (RISC-V S/VS stage), 'sv39x4', 'sv48x4', 'sv57x4' (RISC-V G stage).
 * @module
 */
import * as abi from '../../assembly/abi';
import { flag, id, int, options, u64, describe } from '../base/args';
import type { BoundDevice } from './device';
import { fail } from '../base/errno';
import type { FdState } from './fd-state';
import { FaultQueue } from './fault-queue';
import { HwptPaging, type HwptFlags, type NestedChild } from './hwpt';
import { Ioas } from './ioas';
import { FdObject } from './object-table';
import { checkDomainLimit } from './fd-limits';

/** The table of a user-managed HWPT. */
export interface UserTable {
  /** The table format: x86-64 (VT-d first stage, AMD v2), RISC-V S/VS stage (sv*) or G stage (sv*x4). */
  format: 'x86-64' | 'sv39' | 'sv48' | 'sv57' | 'sv39x4' | 'sv48x4' | 'sv57x4';
  /** Root table address: guest-physical, or a GPA of the parent when nested. 4 KiB aligned (16 KiB for x4). */
  root: bigint | number;
  /** x86-64 only: 4 (default) or 5 levels (VT-d FSPM). */
  levels?: 4 | 5;
  /**
   * Hardware A/D updating of this table's entries. Default: true for x86-64 (VT-d and AMD always
   * update), false for RISC-V (DC.tc.SADE/GADE reset value). When off, a leaf that needs an update
   * faults 'ad-disabled'.
   */
  hwAccessDirty?: boolean;
  /** RISC-V S/VS stage: privileged requests may read/write U pages (SUM). Default false. */
  sum?: boolean;
  /**
   * RISC-V: svpbmt (default true), svnapot (default true), svrsw60t59b (default false).
   * Any format: paBits, the output address width (x86: bits from it to 51 are reserved; default 52,
   * RISC-V 56).
   */
  features?: {
    /** RISC-V Svpbmt: the PBMT memory-type field (default true). */
    svpbmt?: boolean;
    /** RISC-V Svnapot: NAPOT 64 KiB leaves (default true). */
    svnapot?: boolean;
    /** RISC-V Svrsw60t59b: bits 60:59 are software bits instead of reserved (default false). */
    svrsw60t59b?: boolean;
    /** The output address width in bits (default 52 for x86-64, 56 for RISC-V). */
    paBits?: number;
  };
}

/** Arguments of `hwptAlloc` for a user-managed HWPT. */
export interface HwptUserArgs {
  /** A device bound to this FD (names the IOMMU the HWPT is for). */
  devId: number;
  /** A nest-parent HWPT: the new HWPT is nested on it. */
  ptId?: number;
  /** May be the parent of nested HWPTs (G-stage formats only; not with `ptId`). */
  nestParent?: boolean;
  /** May be attached to PASIDs. */
  pasid?: boolean;
  /** The guest's table: its format and root. */
  table: UserTable;
  /** A fault queue (`faultQueueAlloc`) receiving page requests. Not with `nestParent`. */
  faultId?: number;
}

interface FormatInfo {
  fmt: number;
  levels: number;
  g: boolean;
  paBits: number;
}

const FORMATS: Record<string, FormatInfo> = {
  'x86-64': { fmt: abi.FMT_X86_64, levels: 4, g: false, paBits: 52 },
  sv39: { fmt: abi.FMT_RISCV_S, levels: 3, g: false, paBits: 56 },
  sv48: { fmt: abi.FMT_RISCV_S, levels: 4, g: false, paBits: 56 },
  sv57: { fmt: abi.FMT_RISCV_S, levels: 5, g: false, paBits: 56 },
  sv39x4: { fmt: abi.FMT_RISCV_G, levels: 3, g: true, paBits: 56 },
  sv48x4: { fmt: abi.FMT_RISCV_G, levels: 4, g: true, paBits: 56 },
  sv57x4: { fmt: abi.FMT_RISCV_G, levels: 5, g: true, paBits: 56 },
};

const TABLE_KEYS = ['format', 'root', 'levels', 'hwAccessDirty', 'sum', 'features'] as const;
const FEATURE_KEYS = ['svpbmt', 'svnapot', 'svrsw60t59b', 'paBits'] as const;

/** A HWPT_PAGING (engine-managed) or user-managed HWPT that can be a nesting parent. */
type Parent = HwptPaging | HwptUser;

export class HwptUser extends FdObject implements NestedChild {
  readonly type: 'hwpt-nested' | 'hwpt-user';
  /** Nested HWPTs on this one (when it is a nest parent). */
  readonly children = new Set<NestedChild>();

  /** @internal */
  constructor(
    private readonly state: FdState,
    readonly domain: number,
    readonly flags: HwptFlags,
    readonly format: string,
    readonly root: bigint,
    readonly parent: Parent | undefined,
    readonly faultQueue: FaultQueue | undefined,
  ) {
    super();
    this.type = parent ? 'hwpt-nested' : 'hwpt-user';
  }

  /**
   * The IOAS whose reserved ranges a RID attachment must respect: the engine-managed parent's
   * (iommufd reserves the device's regions in the parent's IOAS); none for guest-physical tables.
   */
  get ioas(): Ioas | undefined {
    const p = this.parent;
    return p instanceof HwptPaging ? p.ioas : undefined;
  }

  override details(): Record<string, unknown> {
    return {
      format: this.format, root: this.root, parentId: this.parent?.id, faultId: this.faultQueue?.id,
      nestParent: this.flags.nestParent, pasid: this.flags.pasid,
    };
  }

  release(): void {
    this.faultQueue?.hwptReleased(this);
    this.state.engine.userDomainDestroy(this.domain);
    if (this.parent) {
      this.parent.children.delete(this);
      this.parent.users--;
    }
  }
}

/**
 * IOMMU_HWPT_ALLOC of a user-managed HWPT; checks in iommufd's order (flags, device, parent, data,
 * fault queue). @returns the HWPT ID.
 * @throws EOPNOTSUPP unknown option or format, nestParent with ptId or faultId, dirtyTracking;
 * ENOENT bad devId or faultId; EINVAL ptId not a nest-parent HWPT (missing, an IOAS, nested on
 * nested), bad root/levels/features, no guest RAM; ENOMEM.
 */
export function hwptAllocUser(state: FdState, op: string, o: Partial<Record<string, unknown>>): number {
  const nestParent = flag(op, 'nestParent', o.nestParent, false);
  const pasid = flag(op, 'pasid', o.pasid, false);
  if (flag(op, 'dirtyTracking', o.dirtyTracking, false)) fail('EOPNOTSUPP', op, 'dirty tracking is not supported for user-managed tables');
  if (nestParent && o.ptId !== undefined) fail('EOPNOTSUPP', op, 'a nested HWPT cannot be a nest parent');
  if (nestParent && o.faultId !== undefined) fail('EOPNOTSUPP', op, 'faultId cannot be combined with nestParent');
  state.table.get<BoundDevice>(op, id(op, 'devId', o.devId), 'device');

  let parent: Parent | undefined;
  if (o.ptId !== undefined) {
    const pt = state.table.find(id(op, 'ptId', o.ptId));
    // A paging HWPT takes no driver data (iommufd: user data on a paging alloc is EOPNOTSUPP).
    if (pt instanceof Ioas) fail('EOPNOTSUPP', op, `object ${pt.id} is an IOAS: a table in guest RAM nests on a nest-parent HWPT, an IOAS takes no table`);
    if (!(pt instanceof HwptPaging) && !(pt instanceof HwptUser)) {
      fail('EINVAL', op, pt ? `object ${pt.id} is a ${pt.type}, expected a nest-parent HWPT` : `no object with ID ${o.ptId as number}`);
    }
    if (!pt.flags.nestParent) fail('EINVAL', op, `HWPT ${pt.id} was not allocated with { nestParent: true }`);
    parent = pt;
  }

  const t = options(op, o.table, TABLE_KEYS);
  if (typeof t.format !== 'string' || !Object.hasOwn(FORMATS, t.format)) {
    fail('EOPNOTSUPP', op, `table.format: expected one of ${Object.keys(FORMATS).join(', ')}, got ${describe(t.format)}`);
  }
  const f = FORMATS[t.format]!;
  const root = u64(op, 'table.root', t.root);
  const align = f.g ? 0x4000n : 0x1000n;
  if (root % align !== 0n) fail('EINVAL', op, `table.root: expected a ${align === 0x4000n ? 16 : 4} KiB aligned address, got 0x${root.toString(16)}`);
  let levels = f.levels;
  if (t.levels !== undefined) {
    if (f.fmt !== abi.FMT_X86_64) fail('EINVAL', op, `table.levels: only x86-64 has a choice of depth (${t.format} has ${f.levels})`);
    levels = int(op, 'table.levels', t.levels, 4, 5);
  }
  const hwAD = flag(op, 'table.hwAccessDirty', t.hwAccessDirty, f.fmt === abi.FMT_X86_64);
  if (t.sum !== undefined && f.fmt !== abi.FMT_RISCV_S) fail('EINVAL', op, `table.sum: SUM applies to RISC-V S/VS-stage formats, not ${t.format}`);
  const sum = flag(op, 'table.sum', t.sum, false);
  const feat = options(op, t.features, FEATURE_KEYS);
  const riscv = f.fmt !== abi.FMT_X86_64;
  for (const k of ['svpbmt', 'svnapot', 'svrsw60t59b'] as const) {
    if (feat[k] !== undefined && !riscv) fail('EINVAL', op, `table.features.${k}: a RISC-V extension, not for ${t.format}`);
  }
  const svpbmt = flag(op, 'table.features.svpbmt', feat.svpbmt, true);
  const svnapot = flag(op, 'table.features.svnapot', feat.svnapot, true);
  const svrsw = flag(op, 'table.features.svrsw60t59b', feat.svrsw60t59b, false);
  const paBits = feat.paBits === undefined ? f.paBits : int(op, 'table.features.paBits', feat.paBits, 32, f.paBits);
  if (nestParent && !f.g) fail('EINVAL', op, `a user-managed nest parent must be a G-stage table (sv39x4, sv48x4, sv57x4), not ${t.format}`);
  if (parent && f.g) fail('EINVAL', op, `${t.format} is a G-stage format: it cannot be nested on another stage 2`);
  if (state.engine.ram.empty) fail('EINVAL', op, 'no guest RAM: create the engine with { ram: [{ base, bytes }] } to use tables in guest memory');

  let queue: FaultQueue | undefined;
  if (o.faultId !== undefined) queue = state.table.get<FaultQueue>(op, id(op, 'faultId', o.faultId), 'fault');

  const flags = (hwAD ? abi.DOM_HWAD : 0) | (sum ? abi.DOM_SUM : 0) | (svpbmt && riscv ? abi.DOM_SVPBMT : 0)
    | (svnapot && riscv ? abi.DOM_SVNAPOT : 0) | (svrsw && riscv ? abi.DOM_SVRSW60T59B : 0);
  checkDomainLimit(op, state.limits, () => state.domainsHeld());
  const format = t.format as string;
  const nestUnder = parent;
  return state.table.create(op, () => {
    const domain = state.engine.userDomainCreate(op, f.fmt, levels, root, flags, nestUnder?.domain ?? 0, paBits);
    const hwpt = new HwptUser(state, domain, { auto: false, nestParent, pasid }, format, root, nestUnder, queue);
    if (nestUnder) {
      nestUnder.children.add(hwpt);
      nestUnder.users++;
    }
    queue?.hwptAdded(hwpt);
    return hwpt;
  }).id;
}
