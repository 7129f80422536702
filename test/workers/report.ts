/** What a racing worker translator posts back when told to stop (test/workers/*-worker.mjs). */
export interface WorkerReport {
  /** Translations it checked against the owner's schedule. */
  checked: number;
  /** Of those, translations that succeeded. */
  ok: number;
  /** Results the schedule forbids (stale, torn or garbage). */
  violations: number;
  firstViolation?: unknown;
}
