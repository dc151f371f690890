import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { QmpCommandError, QmpConnectionError, QmpTimeoutError, describeError } from '../errors.js';

/** One asynchronous event from QEMU (`MIGRATION`, `STOP`, `RESUME`, `SHUTDOWN`, ...). */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number } | undefined;
}

export type QmpEventHandler = (event: QmpEvent) => void;

/** Opens the byte stream to a monitor; injectable so tests can use any duplex. */
export type QmpSocketFactory = (path: string) => Duplex;

export interface QmpConnectOptions {
  /** Time allowed for connecting, the greeting and the capabilities handshake. */
  timeoutMs?: number;
  /** Default reply timeout for commands. */
  commandTimeoutMs?: number;
  socketFactory?: QmpSocketFactory;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

const defaultSocketFactory: QmpSocketFactory = (path) => netConnect({ path });

/**
 * The longest line a monitor may send (query-qmp-schema, the largest reply, is
 * about 200 KiB on QEMU 7.2): a monitor streaming bytes without a newline is
 * cut off rather than growing the agent's memory without end.
 */
export const MAX_QMP_LINE_BYTES = 16 * 1024 * 1024;

/**
 * A client for QEMU's machine protocol on a monitor socket: newline-delimited
 * JSON, one command in flight per id, asynchronous events interleaved anywhere.
 * Every pending command settles: with its reply, a typed error, a timeout, or a
 * connection error when the monitor closes.
 */
export class QmpClient {
  readonly greeting: QmpGreeting;
  private readonly socket: Duplex;
  private readonly pending = new Map<string, Pending>();
  private readonly handlers = new Map<string, Set<QmpEventHandler>>();
  private readonly closeHandlers = new Set<(err: Error) => void>();
  private nextId = 1;
  private buffer = '';
  /** Bytes to text across chunk boundaries: a character's bytes may arrive in two chunks. */
  private readonly decoder: StringDecoder;
  private closedWith: Error | undefined;
  private readonly commandTimeoutMs: number;

  private constructor(
    socket: Duplex,
    greeting: QmpGreeting,
    buffer: string,
    decoder: StringDecoder,
    commandTimeoutMs: number,
  ) {
    this.socket = socket;
    this.decoder = decoder;
    this.greeting = greeting;
    this.commandTimeoutMs = commandTimeoutMs;
    socket.on('data', (chunk: Buffer | string) =>
      this.onData(typeof chunk === 'string' ? chunk : this.decoder.write(chunk)),
    );
    socket.on('error', (err: Error) =>
      this.shutdown(new QmpConnectionError(`QEMU monitor connection failed: ${err.message}`, { cause: err })),
    );
    socket.on('close', () => this.shutdown(new QmpConnectionError('QEMU monitor closed the connection')));
    if (buffer.length > 0) this.onData(buffer);
  }

  /** Connects to the monitor at `path`, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = (options.socketFactory ?? defaultSocketFactory)(path);
    const { greeting, rest, decoder } = await readGreeting(socket, path, timeoutMs);
    const client = new QmpClient(socket, greeting, rest, decoder, options.commandTimeoutMs ?? 30_000);
    try {
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  /** True until the monitor connection closes. */
  get connected(): boolean {
    return this.closedWith === undefined;
  }

  /**
   * Runs a command and resolves with its `return` value. QEMU's error replies
   * reject with {@link QmpCommandError}; no reply in time rejects with
   * {@link QmpTimeoutError}; a closed monitor rejects with {@link QmpConnectionError}.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closedWith !== undefined) {
      return Promise.reject(
        new QmpConnectionError(`cannot run '${command}': ${this.closedWith.message}`, {
          cause: this.closedWith,
        }),
      );
    }
    const id = `vmf-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = {
        command,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer: undefined,
      };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new QmpTimeoutError(command, timeoutMs));
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      const message =
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Subscribes to one event name, or '*' for all; returns the unsubscribe function. */
  on(event: string, handler: QmpEventHandler): () => void {
    let set = this.handlers.get(event);
    if (set === undefined) {
      set = new Set();
      this.handlers.set(event, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Called once when the connection ends, with the reason. */
  onClose(handler: (err: Error) => void): () => void {
    if (this.closedWith !== undefined) {
      const reason = this.closedWith;
      queueMicrotask(() => handler(reason));
      return () => undefined;
    }
    this.closeHandlers.add(handler);
    return () => this.closeHandlers.delete(handler);
  }

  /** Resolves with the first event named `event` that satisfies `match`; rejects on timeout or close. */
  waitForEvent(
    event: string,
    match: (e: QmpEvent) => boolean = () => true,
    timeoutMs = 30_000,
  ): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        off();
        offClose();
      };
      const timer = setTimeout(() => {
        done();
        reject(new QmpTimeoutError(`wait for event ${event}`, timeoutMs));
      }, timeoutMs);
      const off = this.on(event, (e) => {
        if (!match(e)) return;
        done();
        resolve(e);
      });
      const offClose = this.onClose((err) => {
        done();
        reject(err);
      });
    });
  }

  /** Closes the connection; pending commands reject with a connection error. */
  close(): void {
    this.shutdown(new QmpConnectionError('QMP client closed'));
  }

  private shutdown(reason: Error): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = reason;
    for (const [id, entry] of this.pending) {
      this.pending.delete(id);
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      entry.reject(
        new QmpConnectionError(`'${entry.command}' got no reply: ${reason.message}`, {
          cause: reason,
        }),
      );
    }
    this.socket.destroy();
    for (const handler of this.closeHandlers) handler(reason);
    this.closeHandlers.clear();
  }

  private onData(text: string): void {
    if (this.closedWith !== undefined) return;
    this.buffer += text;
    if (this.buffer.length > MAX_QMP_LINE_BYTES && !this.buffer.includes('\n')) {
      this.buffer = '';
      this.shutdown(
        new QmpConnectionError(`QEMU monitor sent a line longer than ${MAX_QMP_LINE_BYTES} bytes`),
      );
      return;
    }
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length === 0) continue;
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch (err) {
        this.shutdown(
          new QmpConnectionError(`QEMU monitor sent a line that is not JSON: ${line.slice(0, 200)}`, {
            cause: err,
          }),
        );
        return;
      }
      this.dispatch(message);
      if (this.closedWith !== undefined) return;
    }
  }

  private dispatch(message: unknown): void {
    if (typeof message !== 'object' || message === null) return;
    const m = message as Record<string, unknown>;
    if (typeof m.event === 'string') {
      const event: QmpEvent = {
        event: m.event,
        // Handlers read fields of `data`: anything but an object (a monitor gone wrong) reads as none.
        data: isPlainObject(m.data) ? m.data : {},
        timestamp: isPlainObject(m.timestamp) ? (m.timestamp as QmpEvent['timestamp']) : undefined,
      };
      for (const key of [event.event, '*']) {
        for (const handler of this.handlers.get(key) ?? []) handler(event);
      }
      return;
    }
    if (typeof m.id !== 'string') return;
    const entry = this.pending.get(m.id);
    if (entry === undefined) return;
    this.pending.delete(m.id);
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    if ('error' in m) {
      const e = (m.error ?? {}) as { class?: unknown; desc?: unknown };
      entry.reject(
        new QmpCommandError(
          entry.command,
          typeof e.class === 'string' ? e.class : 'GenericError',
          typeof e.desc === 'string' ? e.desc : 'unknown error',
        ),
      );
    } else {
      entry.resolve(m.return);
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readGreeting(
  socket: Duplex,
  path: string,
  timeoutMs: number,
): Promise<{ greeting: QmpGreeting; rest: string; decoder: StringDecoder }> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const decoder = new StringDecoder('utf8');
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const fail = (err: Error): void => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new QmpTimeoutError(`greeting on ${path}`, timeoutMs)), timeoutMs);
    const onError = (err: Error): void =>
      fail(
        new QmpConnectionError(`cannot connect to QEMU monitor ${path}: ${describeError(err)}`, {
          cause: err,
        }),
      );
    const onClose = (): void =>
      fail(new QmpConnectionError(`QEMU monitor ${path} closed before its greeting`));
    const onData = (chunk: Buffer | string): void => {
      buffer += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      const newline = buffer.indexOf('\n');
      if (newline < 0) {
        if (buffer.length > MAX_QMP_LINE_BYTES)
          fail(new QmpConnectionError(`${path} is not a QMP monitor (no greeting line)`));
        return;
      }
      const line = buffer.slice(0, newline).trim();
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        fail(new QmpConnectionError(`${path} is not a QMP monitor (greeting was: ${line.slice(0, 120)})`));
        return;
      }
      const qmp = (parsed as { QMP?: QmpGreeting }).QMP;
      if (qmp === undefined) {
        fail(new QmpConnectionError(`${path} is not a QMP monitor (no QMP greeting)`));
        return;
      }
      cleanup();
      // Bytes of a character split after the greeting stay in the decoder: hand them on.
      resolve({ greeting: qmp, rest: buffer.slice(newline + 1), decoder });
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}
