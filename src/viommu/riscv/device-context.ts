/**
 * Device contexts (specification 1.0 section 2.1.3, "Device-context"): decoding the 32-byte base or
 * 64-byte extended format and the configuration checks that make a valid context "misconfigured"
 * (cause 259, section 2.1.4 "Device-context configuration checks"), in the reference model's order.
 * @module
 */
import { CAP, CAUSE, FCTL_BE, FCTL_GXL, bit, bits } from './constants';

/** A checked device context. */
export interface DeviceContext {
  /** The raw words (4 base, 8 extended): a re-read DC equal to these needs no new translation setup. */
  readonly words: readonly bigint[];
  readonly dtf: boolean;
  readonly pdtv: boolean;
  readonly dpe: boolean;
  readonly gade: boolean;
  readonly sade: boolean;
  readonly enPri: boolean;
  readonly prpr: boolean;
  /** `iohgatp.MODE` (0 Bare, 8/9/10 Sv39x4/48x4/57x4), PPN and GSCID. */
  readonly gMode: number;
  readonly gRoot: bigint;
  readonly gscid: number;
  /** `ta.PSCID`. */
  readonly pscid: number;
  /** `fsc`: `iosatp` (PDTV=0: mode 0/8/9/10) or `pdtp` (PDTV=1: mode 0 Bare, 1 PD8, 2 PD17, 3 PD20). */
  readonly fscMode: number;
  readonly fscRoot: bigint;
}

/** The configuration that decides which encodings a device context may use. */
export interface DcConfig {
  capabilities: bigint;
  fctl: number;
}

const S_MODE_CAP: Record<number, bigint> = { 8: CAP.Sv39, 9: CAP.Sv48, 10: CAP.Sv57 };
const G_MODE_CAP: Record<number, bigint> = { 8: CAP.Sv39x4, 9: CAP.Sv48x4, 10: CAP.Sv57x4 };
const PD_MODE_CAP: Record<number, bigint> = { 1: CAP.PD8, 2: CAP.PD17, 3: CAP.PD20 };

const has = (caps: bigint, cap: bigint): boolean => (caps & cap) !== 0n;

/**
 * Checks a device context whose `tc.V` is 1.
 * @returns the decoded context, or cause 259 (misconfigured).
 */
export function checkDeviceContext(words: readonly bigint[], cfg: DcConfig): DeviceContext | number {
  const [tc, iohgatp, ta, fsc] = words as [bigint, bigint, bigint, bigint];
  const caps = cfg.capabilities;
  const ext = words.length === 8;
  const bad = CAUSE.ddtMisconfigured;
  // 1. Reserved bits (tc[31:24] is custom and not checked).
  if (bits(tc, 23, 12) !== 0n || bits(tc, 63, 32) !== 0n || bits(ta, 11, 0) !== 0n || bits(ta, 63, 32) !== 0n || bits(fsc, 59, 44) !== 0n) return bad;
  if (ext && (bits(words[4]!, 59, 44) !== 0n || bits(words[5]!, 63, 52) !== 0n || bits(words[6]!, 63, 52) !== 0n || words[7] !== 0n)) return bad;
  const enAts = bit(tc, 1), enPri = bit(tc, 2), t2gpa = bit(tc, 3), pdtv = bit(tc, 5), prpr = bit(tc, 6);
  const gade = bit(tc, 7), sade = bit(tc, 8), dpe = bit(tc, 9), sbe = bit(tc, 10), sxl = bit(tc, 11);
  // 2-7. ATS, PRI and T2GPA.
  if (!has(caps, CAP.ATS) && (enAts || enPri || prpr)) return bad;
  if (!enAts && (t2gpa || enPri)) return bad;
  if (!enPri && prpr) return bad;
  if (!has(caps, CAP.T2GPA) && t2gpa) return bad;
  const gMode = Number(bits(iohgatp, 63, 60));
  if (t2gpa && gMode === 0) return bad;
  // 8-12. First-stage (or process directory) mode.
  const fscMode = Number(bits(fsc, 63, 60));
  if (pdtv) {
    if (fscMode !== 0 && !(fscMode in PD_MODE_CAP && has(caps, PD_MODE_CAP[fscMode]!))) return bad;
  } else {
    // SXL=1 (Sv32) is never supported by this model: only SXL=0 encodings are defined.
    if (sxl) {
      if (fscMode !== 0 && !(fscMode === 8 && has(caps, CAP.Sv32))) return bad;
    } else if (fscMode !== 0 && !(fscMode in S_MODE_CAP && has(caps, S_MODE_CAP[fscMode]!))) return bad;
    if (dpe) return bad;
  }
  // 13-15. G-stage mode.
  const gxl = (cfg.fctl & FCTL_GXL) !== 0;
  if (gxl) {
    if (gMode !== 0 && !(gMode === 8 && has(caps, CAP.Sv32x4))) return bad;
  } else if (gMode !== 0 && !(gMode in G_MODE_CAP && has(caps, G_MODE_CAP[gMode]!))) return bad;
  // 16. MSI page-table mode (extended format).
  const msiMode = ext ? Number(bits(words[4]!, 63, 60)) : 0;
  if (ext && msiMode > 1) return bad;
  // 17. The G-stage root is 16 KiB aligned.
  if (gMode !== 0 && (iohgatp & 3n) !== 0n) return bad;
  // 18. Hardware A/D updating needs AMO_HWAD.
  if (!has(caps, CAP.AMO_HWAD) && (sade || gade)) return bad;
  // 19, 21. SBE must match fctl.BE unless both endiannesses are supported.
  if (!has(caps, CAP.END) && sbe !== ((cfg.fctl & FCTL_BE) !== 0)) return bad;
  // 20. SXL must match GXL (SXL is not writable: Sv32 only with GXL=1).
  if (sxl !== gxl) return bad;
  // 23. MSI translation needs a G stage.
  if (ext && gMode === 0 && msiMode !== 0) return bad;
  return {
    words, dtf: bit(tc, 4), pdtv, dpe, gade, sade, enPri, prpr,
    gMode, gRoot: bits(iohgatp, 43, 0) << 12n, gscid: Number(bits(iohgatp, 59, 44)),
    pscid: Number(bits(ta, 31, 12)), fscMode, fscRoot: bits(fsc, 43, 0) << 12n,
  };
}
