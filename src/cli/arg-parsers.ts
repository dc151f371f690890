import { isAbsolute } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * Commander argument parsers: the one way the CLI turns a flag's text into a
 * value. A bad value is a UsageError naming the flag and what it got.
 */
function invalid(flag: string, value: string, expected: string): UsageError {
  return new UsageError(`${flag} must be ${expected}, got ${JSON.stringify(value)}`);
}

export function wholeNumber(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value)) throw invalid(flag, value, 'a whole number');
    return Number(value);
  };
}

export function wholeNumberIn(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw invalid(flag, value, `from ${min} to ${max}`);
    return n;
  };
}

export function positiveNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw invalid(flag, value, 'a number > 0');
    return n;
  };
}

export function oneOf<T extends string>(flag: string, choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value)) throw invalid(flag, value, choices.join(' or '));
    return value as T;
  };
}

export function absolutePath(flag: string): (value: string) => string {
  return (value) => {
    if (!isAbsolute(value)) throw invalid(flag, value, 'an absolute path');
    return value;
  };
}

/** A repeatable flag: each value parsed, in order. */
export function repeated<T>(parse: (value: string) => T): (value: string, previous: T[] | undefined) => T[] {
  return (value, previous) => [...(previous ?? []), parse(value)];
}
