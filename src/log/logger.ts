/**
 * Structured logs (pino): one JSON object a line with the host's name on every
 * line and the VM and migration on every line that concerns one; readable
 * lines instead when a person watches a terminal.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What a log line is about, beyond its message. */
export interface LogFields {
  vm?: string;
  migration?: string;
  /** Default info. */
  level?: Exclude<LogLevel, 'silent'>;
  [field: string]: unknown;
}

/** How vmferry's components log: a message and, when it concerns one, the VM and migration. */
export type LogFn = (message: string, fields?: LogFields) => void;

export interface AgentLoggerOptions {
  host: string;
  level: LogLevel;
  /** Human-readable lines (colours when `colorize`) instead of JSON. */
  pretty: boolean;
  colorize?: boolean;
  /** Default: standard error. */
  destination?: DestinationStream;
}

export function createAgentLogger(options: AgentLoggerOptions): Logger {
  const base = {
    level: options.level,
    base: { host: options.host },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const destination = options.destination ?? pino.destination(2);
  if (!options.pretty) return pino(base, destination);
  return pino(
    base,
    pretty({
      destination,
      colorize: options.colorize ?? false,
      sync: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,host,vm,migration',
      messageFormat:
        '{if host}[{host}]{end}{if vm} vm={vm}{end}{if migration} migration={migration}{end} {msg}',
      hideObject: false,
    }),
  );
}

/** A {@link LogFn} writing to `logger`. */
export function logFunction(logger: Logger): LogFn {
  return (message, fields = {}) => {
    const { level = 'info', ...rest } = fields;
    logger[level](rest, message);
  };
}
