/** Wall-clock seconds since `t0`, a `process.hrtime.bigint()` reading. */
export function secondsSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** CPU seconds (user + system) of this process since `c0`, a `process.cpuUsage()` reading. */
export function cpuSecondsSince(c0: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1e6;
}
