/** Time, as the drivers see it: passed in, so tests run them without waiting. */
export interface Clock {
  /** Milliseconds, monotonic: what durations and deadlines are measured with. */
  now(): number;
  /** Milliseconds since the Unix epoch: when a sample was taken. */
  epochMs(): number;
  sleep(ms: number): Promise<void>;
}

/** The real clock. With `background`, its waits do not keep the process alive (work carried on after a restart). */
export function systemClock(options: { background?: boolean } = {}): Clock {
  return {
    now: () => performance.now(),
    epochMs: () => Date.now(),
    sleep: (ms) =>
      new Promise((resolve) => {
        const timer = setTimeout(resolve, ms);
        if (options.background === true) timer.unref();
      }),
  };
}
