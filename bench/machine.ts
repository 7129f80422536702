/**
 * How busy the machine was while the bench ran: CPU time stolen by the hypervisor and used by
 * other processes (Linux /proc/stat), and the load average. On a shared 2-vCPU VM these decide
 * how much a ratio between two measurements taken seconds apart can be trusted.
 * @module
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

interface CpuTimes {
  total: number;
  idle: number;
  steal: number;
}

export interface MachineLoad {
  /** Share of all CPU time the hypervisor stole, in percent. */
  stealPct: number;
  /** Share of all CPU time not idle (this process included), in percent. */
  busyPct: number;
  /** 1-minute load average at the end. */
  loadAvg1: number;
}

function cpuTimes(): CpuTimes | undefined {
  try {
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), idle: f[3]! + f[4]!, steal: f[7]! };
  } catch {
    return undefined;
  }
}

/** Starts a measurement; the returned function gives the load since then (undefined off Linux). */
export function watchMachine(): () => MachineLoad | undefined {
  const start = cpuTimes();
  return () => {
    const end = cpuTimes();
    if (!start || !end || end.total === start.total) return undefined;
    const total = end.total - start.total;
    return {
      stealPct: (100 * (end.steal - start.steal)) / total,
      busyPct: (100 * (total - (end.idle - start.idle))) / total,
      loadAvg1: loadavg()[0]!,
    };
  };
}
