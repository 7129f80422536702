/**
 * ioasid: an IOMMU translation engine for emulators, with the FD-centric ownership model of Linux
 * iommufd (ex /dev/ioasid) and its hot path in WebAssembly.
 * @module
 */
export * from './api';
