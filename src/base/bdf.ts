/**
 * PCI addresses: `dddd:bb:dd.f` or `bb:dd.f` (segment 0000 only) and the 16-bit requester ID they
 * name (bus << 8 | device << 3 | function).
 * @module
 */
import { describe } from './args';
import { fail } from './errno';

const BDF = /^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/i;

/** The requester ID of PCI address `bdf`. @throws EINVAL not a PCI address of segment 0000. */
export function ridOfBdf(op: string, bdf: unknown): number {
  if (typeof bdf !== 'string') fail('EINVAL', op, `bdf: expected a string like '0000:03:00.0', got ${describe(bdf)}`);
  const m = BDF.exec(bdf) ?? fail('EINVAL', op, `bdf: expected 'dddd:bb:dd.f', got '${bdf}'`);
  // One IOMMU serves one PCI segment: the requester ID has no room for another.
  if (m[1] !== undefined && parseInt(m[1], 16) !== 0) fail('EINVAL', op, `bdf: this IOMMU serves PCI segment 0000, got '${bdf}'`);
  return (parseInt(m[2]!, 16) << 8) | (parseInt(m[3]!, 16) << 3) | parseInt(m[4]!, 10);
}
