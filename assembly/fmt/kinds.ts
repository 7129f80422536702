// What a format plug-in's decode returns besides a FAULT_* reason (every reason is >= 2, so the
// three share one u32): the entry points at a next-level table, or it maps the address (a leaf).

export const KIND_TABLE: u32 = 0;
export const KIND_LEAF: u32 = 1;
