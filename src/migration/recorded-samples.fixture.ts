import type { MigrationSettings } from '../policy/index.js';
import type { MigrationSample } from './types.js';

/**
 * Samples the source agent journaled during two real migrations (lab on a tc-shaped 1 Gbit/s
 * veth, TCG guests of 256 MiB, clear text, samples every 500 ms, downtime steps 3 x 3 s/GiB),
 * read back with GET /v1/migrations/:id/samples. Rows: elapsed ms, status, transferred,
 * remaining, total, dirty B/s, Mbit/s, pass, expected downtime ms, throttle %, downtime limit ms.
 */
type Row = [number, string, number, number, number, number, number, number, number, number, number | null];

type Recorded = Pick<
  MigrationSettings,
  'downtimeSteps' | 'completionTimeoutSeconds' | 'timeoutAction' | 'postCopy' | 'stallSeconds'
>;

function samplesOf(rows: readonly Row[]): MigrationSample[] {
  return rows.map(
    ([elapsedMs, status, transferred, remaining, total, dirty, mbps, pass, expected, throttle, limit]) => ({
      time: 1_764_518_400_000 + elapsedMs,
      elapsedMs,
      status,
      transferredBytes: transferred,
      remainingBytes: remaining,
      totalBytes: total,
      dirtyRateBps: dirty,
      throughputMbps: mbps,
      pass,
      expectedDowntimeMs: expected,
      cpuThrottlePct: throttle,
      downtimeLimitMs: limit ?? undefined,
    }),
  );
}

/** A guest dirtying 8 MiB/s: converges in its first pass. */
export const CONVERGING: { settings: Recorded; samples: MigrationSample[] } = {
  settings: {
    downtimeSteps: [
      [0, 166],
      [6, 277],
      [12, 388],
      [18, 500],
    ],
    completionTimeoutSeconds: 1600,
    timeoutAction: 'abort',
    postCopy: false,
    stallSeconds: 150,
  },
  samples: samplesOf([
    [503, 'active', 56564513, 229752832, 302530560, 0, 986.1, 1, 300, 0, null],
    [1007, 'active', 116618417, 169816064, 302530560, 0, 970.4, 1, 300, 0, 166],
    [1511, 'active', 176930865, 109621248, 302530560, 0, 949.5, 1, 300, 0, 166],
    [2015, 'active', 236590785, 50077696, 302530560, 0, 957.2, 1, 300, 0, 166],
    [2456, 'completed', 289233548, 0, 302530560, 0, 966.5, 3, 0, 0, 166],
  ]),
};

/** A guest dirtying 256 MiB/s: never converges; the 20 s completion timeout cancels it. */
export const STUBBORN: { settings: Recorded; samples: MigrationSample[] } = {
  settings: {
    downtimeSteps: [
      [0, 166],
      [6, 277],
      [12, 388],
      [18, 500],
    ],
    completionTimeoutSeconds: 20,
    timeoutAction: 'abort',
    postCopy: false,
    stallSeconds: 150,
  },
  samples: samplesOf([
    [504, 'active', 48019969, 238280704, 302530560, 0, 978.9, 1, 300, 0, null],
    [1009, 'active', 110700433, 175722496, 302530560, 0, 883.4, 1, 300, 0, 166],
    [1512, 'active', 170224913, 116314112, 302530560, 0, 1000.3, 1, 300, 0, 166],
    [2016, 'active', 230278817, 56377344, 302530560, 0, 1011.6, 1, 300, 0, 166],
    [2518, 'active', 285437356, 252973056, 302530560, 110940160, 806.4, 2, 2665, 0, 166],
    [3021, 'active', 345618476, 192909312, 302530560, 110940160, 966.4, 2, 2224, 0, 166],
    [3523, 'active', 405147068, 133496832, 302530560, 110940160, 955.7, 2, 2249, 0, 166],
    [4027, 'active', 465722172, 73039872, 302530560, 110940160, 963.6, 2, 2230, 0, 166],
    [4623, 'active', 523937484, 268574720, 302530560, 115445760, 955.7, 3, 2249, 0, 166],
    [5127, 'active', 588977740, 203661312, 302530560, 115445760, 973.0, 3, 2209, 0, 166],
    [5630, 'active', 648768988, 143986688, 302530560, 115445760, 954.1, 3, 2253, 0, 166],
    [6132, 'active', 708818780, 84054016, 302530560, 115445760, 946.1, 3, 2272, 0, 166],
    [6650, 'active', 762437596, 268705792, 302530560, 115445760, 973.0, 4, 2209, 0, 277],
    [7155, 'active', 826685788, 204578816, 302530560, 117436416, 946.1, 4, 2272, 0, 277],
    [7658, 'active', 886866908, 144515072, 302530560, 117436416, 971.7, 4, 2212, 0, 277],
    [8159, 'active', 947052140, 84447232, 302530560, 117436416, 963.6, 4, 2230, 0, 277],
    [8705, 'active', 1003166188, 268705792, 302530560, 117436416, 955.7, 5, 2249, 0, 277],
    [9207, 'active', 1068071020, 203923456, 302530560, 117141504, 947.8, 5, 2267, 0, 277],
    [9709, 'active', 1128646124, 143466496, 302530560, 117141504, 957.2, 5, 2245, 0, 277],
    [10210, 'active', 1188564588, 83664896, 302530560, 117141504, 949.5, 5, 2264, 0, 277],
    [10783, 'active', 1249406460, 265289728, 302530560, 116965376, 946.1, 6, 2272, 0, 277],
    [11290, 'active', 1311951484, 202874880, 302530560, 116965376, 963.6, 6, 2230, 0, 277],
    [11793, 'active', 1372924684, 142020608, 302530560, 116965376, 963.6, 6, 2230, 0, 277],
    [12297, 'active', 1432055180, 83005440, 302530560, 116965376, 963.6, 6, 2230, 0, 277],
    [12808, 'active', 1476743692, 268705792, 302530560, 116965376, 971.7, 7, 2212, 0, 388],
    [13314, 'active', 1540991884, 204578816, 302530560, 113111040, 963.6, 7, 2230, 0, 388],
    [13818, 'active', 1601566988, 144121856, 302530560, 113111040, 955.7, 7, 2249, 0, 388],
    [14321, 'active', 1662146204, 83660800, 302530560, 113111040, 946.1, 7, 2272, 0, 388],
    [14823, 'active', 1715096060, 257433600, 302530560, 115974144, 963.6, 8, 2230, 0, 388],
    [15325, 'active', 1775543948, 197103616, 302530560, 115974144, 957.2, 8, 2245, 0, 388],
    [15831, 'active', 1835725068, 137039872, 302530560, 115974144, 955.7, 8, 2249, 0, 388],
    [16333, 'active', 1896041628, 76840960, 302530560, 115974144, 946.1, 8, 2272, 0, 388],
    [16834, 'active', 1948334844, 251006976, 302530560, 115544064, 546.5, 9, 3933, 0, 388],
    [17336, 'active', 2008515964, 190943232, 302530560, 115544064, 951.1, 9, 2260, 0, 388],
    [17838, 'active', 2068565756, 131010560, 302530560, 115544064, 958.7, 9, 2242, 0, 388],
    [18340, 'active', 2128484220, 71208960, 302530560, 115544064, 951.1, 9, 2260, 0, 388],
    [18842, 'active', 2184988156, 227266560, 302530560, 117374976, 946.1, 10, 2272, 0, 500],
    [19344, 'active', 2245169276, 167202816, 302530560, 117374976, 946.1, 10, 2272, 0, 500],
    [19846, 'active', 2305354508, 107134976, 302530560, 117374976, 963.6, 10, 2230, 0, 500],
    [20349, 'active', 2362379644, 260579328, 302530560, 117452800, 963.6, 11, 2230, 0, 500],
    [20351, 'cancelled', 2362379644, 260579328, 302530560, 117452800, 963.6, 11, 0, 0, 500],
  ]),
};
