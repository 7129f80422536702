/**
 * The JSON sections of a snapshot (format 1), as save.ts writes them; load.ts reads them back
 * through json.ts's validators. Object IDs are FD-local (0 = none); FDs are named by their index in
 * `GraphJson.fds` (the open FDs in the order they were opened); devices by requester ID. u64 values
 * are hex strings. Orders that the engine can observe (Set insertion orders, ID free lists, queue
 * orders) are kept.
 * @module
 */

/** The header section: what it takes to make the engine before its state goes in. */
export interface HeaderJson {
  /** `Iommu.create` options that give the same layout (`shared` is the restorer's choice). */
  options: {
    addressWidth: number;
    pasidBits: number;
    iotlbEntries: number;
    /** 0 when the engine lives in an emulator's memory (`region`). */
    maxMemoryBytes: number;
    translators: number;
    maxDomains: number;
    /**
     * Guest RAM windows: base (hex) and bytes; `offset` for a window in the emulator's memory,
     * `external` for one in a buffer (given back to restore); null when none.
     */
    ram: { base: string; bytes: number; offset?: number; external?: true }[] | null;
    /** The engine's region of an emulator's memory (given back to restore); null in its own memory. */
    region: { offset: number; bytes: number } | null;
  };
  /** False when the snapshot left guest RAM out (`snapshot({ ram: false })`). */
  ramSaved: boolean;
  /** The layout those options gave (checked against the restoring engine's and its control block). */
  layout: Record<string, number | readonly number[]>;
  /** Size of the engine memory (a multiple of 64 KiB). */
  memoryBytes: number;
  /** The page pool's top: the image covers [origin, poolTop). */
  poolTop: number;
  /** Whether the snapshotted engine's memory was shared (informational). */
  shared: boolean;
}

/** [start, last] of an inclusive range. */
export type RangeJson = [start: string, last: string];

/** Who holds a reserved range or an alignment requirement in an io-pagetable. */
export type OwnerJson =
  | ['hwpt', number]
  | ['device', number]
  | ['access', number]
  /** Anything else (e.g. a test's reservation): the same number is the same owner. */
  | ['other', number];

export interface IoptJson {
  areas: [iova: string, last: string, phys: string, read: boolean, write: boolean][];
  allowed: RangeJson[];
  /** Attached domains in attach order: [HWPT_PAGING ID, page size]. */
  domains: [hwptId: number, pageSize: string][];
  reserved: [OwnerJson, RangeJson[]][];
  alignments: [OwnerJson, string][];
}

/** A page request in a fault queue. */
export interface RequestJson {
  rid: number;
  /** The HWPT it came through (same FD as the queue). */
  hwpt: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: string;
  /** 0 while queued (unread). */
  cookie: number;
}

/** A page response a device has received and not yet taken. */
export interface ResponseJson {
  pasidValid: boolean;
  pasid: number;
  grpid: number;
  addr: string;
  code: 'success' | 'invalid';
}

/** HwptFlags, every field (auto, nestParent, pasid, and whatever later versions add). */
export type FlagsJson = Record<string, boolean>;

interface Common {
  id: number;
  /** References that keep the object alive. */
  users: number;
}

export type ObjectJson =
  | (Common & { type: 'ioas'; iopt: IoptJson; hwpts: number[]; accesses: number[] })
  | (Common & {
    type: 'hwpt-paging'; ioas: number; domain: number; flags: FlagsJson; fault: number; children: number[];
    /** Dirty tracking switched on (`hwptSetDirtyTracking`); the D bits themselves are in the image. */
    dirtyEnabled: boolean;
  })
  | (Common & {
    type: 'hwpt-nested' | 'hwpt-user'; domain: number; flags: FlagsJson; format: string; root: string;
    parent: number; fault: number; children: number[];
  })
  | (Common & { type: 'device'; rid: number })
  | (Common & { type: 'access'; ioas: number; pinning: boolean; pins: RangeJson[] })
  | (Common & { type: 'fault'; queued: RequestJson[]; pending: RequestJson[]; nextCookie: number; fdOpen: boolean; hwpts: number[] });

export interface FdJson {
  /** The ID allocator: the next never-used ID, and the freed IDs below it (ascending). */
  next: number;
  freed: number[];
  pasids: number[];
  /** The FD's finite quotas (src/fd-limits.ts); absent in snapshots of versions without them. */
  limits?: { pasids?: number; domains?: number; pages?: number };
  /** RIDs of the devices bound to this FD, in bind order. */
  devices: number[];
  /** In ID order. */
  objects: ObjectJson[];
}

export interface DeviceJson {
  bdf: string;
  rid: number;
  pasidBits: number;
  pri: boolean;
  dirty: boolean;
  reservedRegions: RangeJson[];
  /** Index of the FD it is bound to; -1 = not bound. */
  fd: number;
  /** [pasid, HWPT ID] in attach order; PASID 0 (NO_PASID) is the RID. */
  attached: [pasid: number, hwptId: number][];
  /** The IOAS holding its reserved regions (0 = none). */
  reservedIn: number;
  responses: ResponseJson[];
  /** The group index of its next page request. */
  group: number;
}

/** The graph section. */
export interface GraphJson {
  /** Domain-index allocator: free indices (reused last first) and the next never-used index. */
  domains: { free: number[]; next: number };
  /** Where the search for a free PASID starts. */
  pasidHint: number;
  /** Batch rings of worker translators and buffers of owner batches: freed on restore (a restored engine has neither). */
  rings: { ptr: number; pages: number }[];
  /** In the order they were added. */
  devices: DeviceJson[];
  fds: FdJson[];
}
