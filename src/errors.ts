/**
 * vmferry's error types. Every error the program raises on purpose is a
 * VmferryError with a stable `code` (VMF_ERR_*), an optional `hint` that says
 * how to fix it, and the `cause` it came from. The agent API turns them into
 * `{code, message, hint}` with the HTTP status of its code in {@link ERROR_CODES};
 * the CLI prints message and hint.
 */

/**
 * Every error code vmferry raises, with the HTTP status the agent API (and the
 * tunnel, for its refusals) answers it with. The one registry: codes are this
 * table's keys, so a code not listed here does not compile.
 */
export const ERROR_CODES = {
  VMF_ERR_USAGE: 400,
  VMF_ERR_CONFIG: 400,
  VMF_ERR_AUTH: 403,
  VMF_ERR_NOT_FOUND: 404,
  VMF_ERR_CONFLICT: 409,
  VMF_ERR_PLAN: 422,
  VMF_ERR_LIMIT: 429,
  VMF_ERR_MIGRATION: 500,
  VMF_ERR_QEMU_PROCESS: 500,
  VMF_ERR_DISK_IMAGE: 500,
  VMF_ERR_HOST_SETUP: 500,
  VMF_ERR_CERTIFICATE: 500,
  VMF_ERR_JOURNAL: 500,
  VMF_ERR_INTERNAL: 500,
  VMF_ERR_QMP_COMMAND: 502,
  VMF_ERR_QMP_CONNECTION: 502,
  VMF_ERR_PEER: 502,
  VMF_ERR_UNAVAILABLE: 503,
  VMF_ERR_QMP_TIMEOUT: 504,
} as const satisfies Record<`VMF_ERR_${string}`, number>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export interface VmferryErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
}

export class VmferryError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: VmferryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }

  /** The HTTP status the agent API answers this error with. */
  get httpStatus(): number {
    return ERROR_CODES[this.code];
  }

  toJSON(): { code: ErrorCode; message: string; hint?: string } {
    return this.hint === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, hint: this.hint };
  }
}

/** Bad input given on the command line or to an API call. */
export class UsageError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_USAGE', message, options);
  }
}

/** A configuration file that cannot be used as written; keeps file and line. */
export class ConfigError extends VmferryError {
  readonly file: string;
  readonly line: number | undefined;
  readonly option: string | undefined;

  constructor(
    message: string,
    where: { file: string; line?: number | undefined; option?: string | undefined },
    options: VmferryErrorOptions = {},
  ) {
    const at = where.line === undefined ? where.file : `${where.file}:${where.line}`;
    super('VMF_ERR_CONFIG', `${at}: ${message}`, options);
    this.file = where.file;
    this.line = where.line;
    this.option = where.option;
  }
}

/** QEMU answered a QMP command with an error; keeps QEMU's class and text. */
export class QmpCommandError extends VmferryError {
  readonly command: string;
  readonly qemuClass: string;
  readonly qemuDesc: string;

  constructor(command: string, qemuClass: string, qemuDesc: string) {
    super('VMF_ERR_QMP_COMMAND', `QEMU refused '${command}': ${qemuDesc} (${qemuClass})`);
    this.command = command;
    this.qemuClass = qemuClass;
    this.qemuDesc = qemuDesc;
  }
}

/** The QMP monitor closed, died or never answered. */
export class QmpConnectionError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_QMP_CONNECTION', message, options);
  }
}

/** A QMP command got no reply in time. */
export class QmpTimeoutError extends VmferryError {
  readonly command: string;
  readonly timeoutMs: number;

  constructor(command: string, timeoutMs: number) {
    super('VMF_ERR_QMP_TIMEOUT', `QEMU did not answer '${command}' within ${timeoutMs} ms`);
    this.command = command;
    this.timeoutMs = timeoutMs;
  }
}

/** QEMU could not be started, or exited when it should not have. */
export class QemuProcessError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_QEMU_PROCESS', message, options);
  }
}

/** A disk image could not be created, read or removed (qemu-img failed, the file is not there). */
export class DiskImageError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_DISK_IMAGE', message, options);
  }
}

/** Something needed on this host (QEMU, gcc, a guest build) is missing. */
export class HostSetupError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_HOST_SETUP', message, options);
  }
}

/** A named thing (VM, migration, host) does not exist. */
export class NotFoundError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_NOT_FOUND', message, options);
  }
}

/** The request conflicts with the current state (VM exists, migration already running...). */
export class ConflictError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_CONFLICT', message, options);
  }
}

/** A peer was not who it claimed to be, or had no valid certificate or token. */
export class AuthError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_AUTH', message, options);
  }
}

/** A migration failed; the source VM was left running. */
export class MigrationError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_MIGRATION', message, options);
  }
}

/** The migration plan cannot be carried out safely with these options and hosts. */
export class PlanError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_PLAN', message, options);
  }
}

/** A peer agent could not be reached or answered with an error. */
export class PeerError extends VmferryError {
  /**
   * True when the request certainly never reached the peer (no connection or TLS
   * session was established), so the peer cannot have acted on it. False when it
   * may have arrived: the peer may have done what was asked and only the answer is lost.
   */
  readonly notDelivered: boolean;

  constructor(message: string, options: VmferryErrorOptions & { notDelivered?: boolean } = {}) {
    super('VMF_ERR_PEER', message, options);
    this.notDelivered = options.notDelivered ?? false;
  }
}

/** A certificate or key could not be made, read or used (openssl failed, bad PEM, wrong issuer, expired). */
export class CertificateError extends VmferryError {
  readonly file: string | undefined;

  constructor(message: string, options: VmferryErrorOptions & { file?: string | undefined } = {}) {
    super('VMF_ERR_CERTIFICATE', message, options);
    this.file = options.file;
  }
}

/** The agent's journal (SQLite) cannot be opened, upgraded or written. */
export class JournalError extends VmferryError {
  readonly file: string;

  constructor(message: string, file: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_JOURNAL', message, options);
    this.file = file;
  }
}

/** A request beyond a limit: more tunnel connections than a migration's channels need. */
export class LimitError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_LIMIT', message, options);
  }
}

/** This endpoint does not serve that request here (an agent port with no API behind it). */
export class UnavailableError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_UNAVAILABLE', message, options);
  }
}

/** A fault vmferry did not raise on purpose (a bug): the API answers it as 500 with its message. */
export class InternalError extends VmferryError {
  constructor(message: string, options: VmferryErrorOptions = {}) {
    super('VMF_ERR_INTERNAL', message, options);
  }
}

type Rebuild = (message: string, options: VmferryErrorOptions) => VmferryError;

/**
 * How an error that came over the API is rebuilt, so callers test it with
 * instanceof. Errors whose class carries local details (file, QMP command) come
 * back as a VmferryError with their code: those details stay with the agent.
 */
const REBUILD: Record<ErrorCode, Rebuild> = {
  VMF_ERR_USAGE: (m, o) => new UsageError(m, o),
  VMF_ERR_CONFIG: (m, o) => new VmferryError('VMF_ERR_CONFIG', m, o),
  VMF_ERR_AUTH: (m, o) => new AuthError(m, o),
  VMF_ERR_NOT_FOUND: (m, o) => new NotFoundError(m, o),
  VMF_ERR_CONFLICT: (m, o) => new ConflictError(m, o),
  VMF_ERR_PLAN: (m, o) => new PlanError(m, o),
  VMF_ERR_LIMIT: (m, o) => new LimitError(m, o),
  VMF_ERR_MIGRATION: (m, o) => new MigrationError(m, o),
  VMF_ERR_QEMU_PROCESS: (m, o) => new QemuProcessError(m, o),
  VMF_ERR_DISK_IMAGE: (m, o) => new DiskImageError(m, o),
  VMF_ERR_HOST_SETUP: (m, o) => new HostSetupError(m, o),
  VMF_ERR_CERTIFICATE: (m, o) => new CertificateError(m, o),
  VMF_ERR_JOURNAL: (m, o) => new VmferryError('VMF_ERR_JOURNAL', m, o),
  VMF_ERR_INTERNAL: (m, o) => new InternalError(m, o),
  VMF_ERR_QMP_COMMAND: (m, o) => new VmferryError('VMF_ERR_QMP_COMMAND', m, o),
  VMF_ERR_QMP_CONNECTION: (m, o) => new QmpConnectionError(m, o),
  VMF_ERR_PEER: (m, o) => new PeerError(m, o),
  VMF_ERR_UNAVAILABLE: (m, o) => new UnavailableError(m, o),
  VMF_ERR_QMP_TIMEOUT: (m, o) => new VmferryError('VMF_ERR_QMP_TIMEOUT', m, o),
};

/**
 * Rebuilds a typed error from an API error body `{code, message, hint}`. A body
 * that is not one, or names a code this vmferry does not know, is the peer's
 * fault: a PeerError (with the peer's message when there is one).
 */
export function errorFromBody(body: unknown, fallback: string): VmferryError {
  if (typeof body === 'object' && body !== null) {
    const b = body as { code?: unknown; message?: unknown; hint?: unknown };
    if (typeof b.message === 'string') {
      const options = { hint: typeof b.hint === 'string' ? b.hint : undefined };
      if (isErrorCode(b.code)) return REBUILD[b.code](b.message, options);
      return new PeerError(`${fallback}: ${b.message}`, options);
    }
  }
  return new PeerError(fallback);
}

/** The message of anything thrown, for logs and reports. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
