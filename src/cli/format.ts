import type { DrainPlan, DryRun, HostSummary, PeerStatus } from '../agent/index.js';
import { sumDiskSamples } from '../block/index.js';
import type { DrainJob } from '../maintenance/index.js';
import type { MigrationReport, MigrationSample } from '../migration/index.js';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

export function formatBytes(bytes: number): string {
  if (bytes >= GIB) return `${(bytes / GIB).toFixed(2)} GiB`;
  if (bytes >= MIB) return `${(bytes / MIB).toFixed(1)} MiB`;
  return `${Math.round(bytes / 1024)} KiB`;
}

/** Share of guest RAM already on the destination, 0-100. */
export function percentSent(sample: Pick<MigrationSample, 'totalBytes' | 'remainingBytes'>): number {
  if (sample.totalBytes <= 0) return 0;
  return Math.max(0, Math.min(100, ((sample.totalBytes - sample.remainingBytes) / sample.totalBytes) * 100));
}

/** One progress line: bar, percent, throughput, remaining, dirty rate, pass, elapsed. */
export function progressLine(sample: MigrationSample, state: string, width = 24): string {
  const pct = percentSent(sample);
  const filled = Math.round((pct / 100) * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const parts = [
    `${bar} ${pct.toFixed(0).padStart(3)}%`,
    `${(sample.throughputMbps / 1000).toFixed(2)} Gbit/s`,
    `remaining ${formatBytes(sample.remainingBytes)}`,
    `dirty ${formatBytes(sample.dirtyRateBps)}/s`,
    `pass ${sample.pass}`,
  ];
  if (sample.cpuThrottlePct > 0) parts.push(`throttle ${sample.cpuThrottlePct}%`);
  const disks = diskProgress(sample);
  if (disks !== undefined) parts.push(disks);
  parts.push(`${(sample.elapsedMs / 1000).toFixed(1)} s`, state);
  return parts.join('  ');
}

/** Block migration: the disk copies beside the memory: copied, remaining, not yet copied writes, in step or not. */
export function diskProgress(sample: Pick<MigrationSample, 'disks'>): string | undefined {
  if (sample.disks === undefined || sample.disks.length === 0) return undefined;
  const d = sumDiskSamples(sample.disks);
  return (
    `disks ${formatBytes(d.transferredBytes)} copied, ${formatBytes(d.remainingBytes)} remaining, ` +
    `dirty ${formatBytes(d.dirtyBytes)}${d.ready ? ', in step' : ''}`
  );
}

/** The end-of-migration report for people. */
export function reportLines(r: MigrationReport): string[] {
  const lines = [
    `migration ${r.id}: ${r.vm} ${r.from} -> ${r.to}: ${r.status.toUpperCase()}`,
    `  transport   ${r.transport}${r.tls ? ' + TLS' : ' (clear text)'}, ${r.channels} channel(s)${r.postCopy ? ', post-copy allowed' : ''}${r.autoConverge ? ', auto-converge' : ''}`,
    `  sent        ${formatBytes(r.bytes)} in ${r.seconds.toFixed(2)} s = ${r.gbps.toFixed(2)} Gbit/s, ${r.iterations} pass(es); ${r.totalSeconds.toFixed(2)} s in all`,
    `  downtime    ${r.downtimeMs === undefined ? 'n/a' : `${r.downtimeMs} ms`}${r.forcedPauseMs !== undefined ? ` (guest paused ${r.forcedPauseMs} ms to force completion)` : ''}`,
  ];
  if (r.maxCpuThrottlePct > 0)
    lines.push(`  throttle    up to ${r.maxCpuThrottlePct}% of guest CPU (auto-converge)`);
  if (r.postcopySwitchSeconds !== undefined)
    lines.push(`  post-copy   switched at ${r.postcopySwitchSeconds} s`);
  for (const d of r.disks ?? [])
    lines.push(
      `  disk ${d.disk}      ${formatBytes(d.bytes)} copied (${d.sync === 'top' ? 'top image only' : 'whole disk'})`,
    );
  for (const e of r.events) lines.push(`  event       ${e}`);
  if (r.forecast !== undefined) lines.push(`  forecast    ${r.forecast}`);
  lines.push(`  guest       ${r.guest}: ${r.guestDetail}`);
  if (r.error !== undefined) lines.push(`  error       ${r.error}`);
  for (const reason of r.reasons) lines.push(`  why         ${reason}`);
  return lines;
}

/** `vmferry migrate --dry-run` for people: the pre-flight checks, then the plan, the measured rates and the forecast. */
export function dryRunLines(d: DryRun): string[] {
  const checks = d.checks.map((c) => `  ${c.ok ? 'ok  ' : 'FAIL'}        ${c.check}: ${c.message}`);
  if (d.refused !== undefined) {
    return [
      `dry run: ${d.vm} -> ${d.to}: refused by the pre-flight checks`,
      ...checks,
      ...(d.refused.hint !== undefined ? [`  hint        ${d.refused.hint}`] : []),
    ];
  }
  const s = d.settings;
  return [
    `dry run: ${d.vm} -> ${d.to}`,
    ...checks,
    `  transport   ${s.transport}${s.tls ? ' + TLS' : ' (clear text)'}, ${s.channels} channel(s)${s.postCopy ? ', post-copy allowed' : ''}${s.autoConverge ? ', auto-converge' : ''}`,
    `  dirty rate  ${formatBytes(d.dirtyRateBps)}/s (sampled for ${d.dirtyRateSampleSeconds} s)`,
    `  link        ${((d.throughputBps * 8) / 1e9).toFixed(2)} Gbit/s: ${d.throughputSource}`,
    `  downtime    up to ${d.downtimeLimitMs} ms (last downtime step)`,
    `  forecast    ${d.forecast.summary}`,
    ...s.reasons.map((r) => `  why         ${r}`),
  ];
}

/** `vmferry host list` for people: one line per host, this one first. */
export function hostListLines(view: { self: HostSummary; peers: PeerStatus[] }): string[] {
  const row = (address: string, h: HostSummary | undefined, why?: string): string[] =>
    h === undefined
      ? ['?', address, `unreachable: ${why ?? ''}`, '', '', '', '', '', '']
      : [
          h.name,
          address,
          'ok',
          h.maintenance ? 'maintenance' : '-',
          String(h.vms),
          `${h.capacity.freeForVmsMiB}/${h.capacity.totalMiB} MiB`,
          `${h.migrations.running} running, ${h.migrations.queued} queued, ${h.migrations.incoming} in`,
          h.qemuVersion,
          h.nativeTls ? 'yes' : 'no',
        ];
  const rows = [
    ['host', 'address', 'state', 'mode', 'VMs', 'memory free/total', 'migrations', 'QEMU', 'QEMU TLS'],
    row('(this host)', view.self),
    ...view.peers.map((p) => row(p.address, p.host, p.unreachable)),
  ];
  return columns(rows);
}

/** Rows as columns padded to their widest cell. */
function columns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_c, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** The end of `vmferry host drain`: one row per VM. */
export function drainTableLines(job: DrainJob): string[] {
  const rows = job.items.map((item) => {
    const last = item.attempts.at(-1);
    return [
      item.vm,
      last?.host ?? last?.destination ?? '-',
      item.status,
      last?.seconds !== undefined ? `${last.seconds.toFixed(1)} s` : '-',
      last?.downtimeMs !== undefined ? `${last.downtimeMs} ms` : '-',
      last?.transport ?? '-',
      item.status === 'failed'
        ? item.reasons.join('; ')
        : item.attempts.length > 1
          ? `${item.attempts.length} attempts`
          : '',
    ];
  });
  return [
    `drain ${job.id} of ${job.host}: ${job.state}`,
    ...columns([['VM', 'destination', 'status', 'duration', 'downtime', 'transport', 'why'], ...rows]),
  ];
}

/** `vmferry host drain --dry-run`: where each VM would go, and why the other hosts were passed over. */
export function drainPlanLines(plan: DrainPlan): string[] {
  const lines = [`drain of ${plan.host} (dry run, nothing moved) to ${plan.candidates.join(', ')}:`];
  for (const p of plan.placements) {
    lines.push(`  ${p.vm} (${p.memoryMiB} MiB) -> ${p.host ?? 'NO DESTINATION'}`);
    for (const r of p.reasons) lines.push(`      ${r}`);
  }
  return lines;
}
