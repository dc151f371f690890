/**
 * The agent's journal: an embedded SQLite database (better-sqlite3) of the VMs
 * this host runs and the migrations it takes part in, so that a restarted
 * agent knows what it owns and which migrations were cut short.
 *
 * Durability: WAL mode with synchronous=FULL. NORMAL would survive an agent
 * crash but may lose the last commits on power loss or a kernel crash; the
 * journal records hand-overs between hosts (the destination records that it
 * owns the VM before the source forgets it), so a commit that returned must
 * be on disk. Writes are rare (state changes, a progress sample every few
 * hundred ms during a migration), so one fsync per commit costs nothing that
 * matters.
 *
 * Time comes from the injected clock (milliseconds since the epoch), never
 * from Date.now() here, so tests and replays control it.
 */
import Database from 'better-sqlite3';
import { ConflictError, JournalError, NotFoundError, UsageError, describeError } from '../errors.js';
import {
  MIGRATION_STATES,
  TERMINAL_MIGRATION_STATES,
  isTerminalMigrationState,
  type MigrationSample,
  type MigrationState,
} from '../migration/index.js';
import type { MigrationSettings, Transport } from '../policy/index.js';

/** Milliseconds since the Unix epoch. */
export type Clock = () => number;

export const VM_STATES = [
  'starting',
  'running',
  'paused',
  'incoming',
  'migrating',
  'stopping',
  'stopped',
  'failed',
] as const;
export type VmState = (typeof VM_STATES)[number];

export type MigrationRole = 'source' | 'destination';

export interface VmInput {
  name: string;
  /** The VM spec as JSON-serializable data; the journal stores it, the caller validates it when reading. */
  spec: unknown;
  state: VmState;
  pid?: number | null;
  qmpSocket: string;
  serialLog: string;
}

export interface VmRecord {
  name: string;
  spec: unknown;
  state: VmState;
  pid: number | null;
  qmpSocket: string;
  serialLog: string;
  createdAt: number;
  updatedAt: number;
}

export interface MigrationInput {
  id: string;
  vm: string;
  role: MigrationRole;
  /** The other agent's name (its certificate CN). */
  peer: string;
  transport: Transport;
  /** The migration plan the drivers follow (the source's, on both ends). */
  plan: MigrationSettings;
  /** Default 'pending'. */
  state?: MigrationState;
  message?: string;
}

export interface MigrationRecord {
  id: string;
  vm: string;
  role: MigrationRole;
  peer: string;
  transport: Transport;
  plan: MigrationSettings;
  state: MigrationState;
  error: string | null;
  report: unknown;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | null;
}

/** A file or folder a destination makes for a migration: journaled `creating` before, `created` once made. */
export interface MigrationFile {
  path: string;
  kind: 'image' | 'folder';
  state: 'creating' | 'created';
}

export interface MigrationEvent {
  time: number;
  /** null for the event that created the migration. */
  from: MigrationState | null;
  to: MigrationState;
  message: string | null;
}

export interface StateChange {
  error?: string;
  report?: unknown;
  message?: string;
}

/** A `vmferry host calibrate` run as journaled: its result is the calibration module's, stored as JSON. */
export interface CalibrationRecord {
  id: string;
  /** The peer agent's address as the operator named it. */
  peer: string;
  startedAt: number;
  finishedAt: number;
  result: unknown;
}

interface CalibrationRow {
  id: string;
  peer: string;
  started_at: number;
  finished_at: number;
  result: string;
}

/** A migration that {@link Journal.failInFlightMigrations} ended, with the state it was cut off in. */
export interface InterruptedMigration extends MigrationRecord {
  previousState: MigrationState;
}

/** What {@link Journal.prune} removed. */
export interface PruneResult {
  migrations: number;
  samples: number;
}

const DAY_MS = 24 * 3600 * 1000;

export interface ListMigrationsFilter {
  vm?: string;
  /** true: only non-terminal; false: only terminal. */
  active?: boolean;
}

/** Schema changes, applied in order, each once; never edit a released step, add a new one. */
const SCHEMA_STEPS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE vms (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        pid INTEGER,
        qmp_socket TEXT NOT NULL,
        serial_log TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      -- No foreign key to vms: a source forgets the VM when the migration succeeds,
      -- but keeps the migration's history.
      CREATE TABLE migrations (
        id TEXT PRIMARY KEY,
        vm TEXT NOT NULL,
        role TEXT NOT NULL,
        peer TEXT NOT NULL,
        transport TEXT NOT NULL,
        plan TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT,
        report TEXT,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER
      ) STRICT;
      CREATE INDEX migrations_by_vm ON migrations (vm, started_at);
      CREATE INDEX migrations_by_state ON migrations (state);
      CREATE TABLE migration_events (
        seq INTEGER PRIMARY KEY,
        migration_id TEXT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
        time INTEGER NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        message TEXT
      ) STRICT;
      CREATE INDEX migration_events_by_migration ON migration_events (migration_id, seq);
      CREATE TABLE migration_samples (
        seq INTEGER PRIMARY KEY,
        migration_id TEXT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
        time INTEGER NOT NULL,
        status TEXT NOT NULL,
        transferred INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        total INTEGER NOT NULL,
        dirty_rate REAL,
        throughput_mbps REAL,
        pass INTEGER NOT NULL,
        expected_downtime_ms REAL,
        cpu_throttle_pct REAL
      ) STRICT;
      CREATE INDEX migration_samples_by_migration ON migration_samples (migration_id, time, seq);
    `,
  },
  {
    // Samples keep everything the driver saw (one sample type): older rows count from the migration's start.
    version: 2,
    sql: `
      ALTER TABLE migration_samples ADD COLUMN elapsed_ms REAL;
      ALTER TABLE migration_samples ADD COLUMN downtime_limit_ms REAL;
    `,
  },
  {
    // `vmferry host calibrate`: each secure transport measured to one peer (issue 16).
    version: 3,
    sql: `
      CREATE TABLE calibrations (
        id TEXT PRIMARY KEY,
        peer TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        result TEXT NOT NULL
      );
      CREATE INDEX calibrations_peer ON calibrations (peer, finished_at);
      `,
  },
  {
    // Block migration: each copied disk at each sample.
    version: 4,
    sql: `
      CREATE TABLE migration_disk_samples (
        sample_seq INTEGER NOT NULL REFERENCES migration_samples (seq) ON DELETE CASCADE,
        disk INTEGER NOT NULL,
        transferred INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        total INTEGER NOT NULL,
        dirty INTEGER NOT NULL,
        ready INTEGER NOT NULL,
        PRIMARY KEY (sample_seq, disk)
      ) STRICT;
    `,
  },
  {
    // Host-wide settings an operator changes at run time (maintenance mode), and drains.
    version: 5,
    sql: `
      CREATE TABLE host_settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE drains (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        job TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER
      ) STRICT;
    `,
  },
  {
    // Block migration: the images and folders a destination makes, journaled before it makes each.
    version: 6,
    sql: `
      CREATE TABLE migration_files (
        migration_id TEXT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (migration_id, path)
      ) STRICT;
    `,
  },
];

/** The schema version this code writes. */
export const JOURNAL_SCHEMA_VERSION = SCHEMA_STEPS[SCHEMA_STEPS.length - 1]?.version ?? 0;

interface VmRow {
  name: string;
  spec: string;
  state: string;
  pid: number | null;
  qmp_socket: string;
  serial_log: string;
  created_at: number;
  updated_at: number;
}

interface MigrationRow {
  id: string;
  vm: string;
  role: string;
  peer: string;
  transport: string;
  plan: string;
  state: string;
  error: string | null;
  report: string | null;
  started_at: number;
  updated_at: number;
  finished_at: number | null;
}

interface EventRow {
  time: number;
  from_state: string | null;
  to_state: string;
  message: string | null;
}

interface SampleRow {
  seq: number;
  time: number;
  elapsed_ms: number;
  downtime_limit_ms: number | null;
  status: string;
  transferred: number;
  remaining: number;
  total: number;
  dirty_rate: number | null;
  throughput_mbps: number | null;
  pass: number;
  expected_downtime_ms: number | null;
  cpu_throttle_pct: number | null;
}

function toJson(value: unknown, what: string): string {
  // JSON.stringify returns undefined (despite its type) for undefined, functions and symbols.
  let text: unknown;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new UsageError(`${what} cannot be stored as JSON: ${describeError(err)}`, { cause: err });
  }
  if (typeof text !== 'string')
    throw new UsageError(`${what} cannot be stored as JSON: it is ${typeof value}`);
  return text;
}

function checkOneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`invalid ${what} '${value}': expected one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function vmFromRow(row: VmRow): VmRecord {
  return {
    name: row.name,
    spec: JSON.parse(row.spec) as unknown,
    state: row.state as VmState,
    pid: row.pid,
    qmpSocket: row.qmp_socket,
    serialLog: row.serial_log,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function migrationFromRow(row: MigrationRow): MigrationRecord {
  return {
    id: row.id,
    vm: row.vm,
    role: row.role as MigrationRole,
    peer: row.peer,
    transport: row.transport as Transport,
    plan: JSON.parse(row.plan) as MigrationSettings,
    state: row.state as MigrationState,
    error: row.error,
    report: row.report === null ? null : (JSON.parse(row.report) as unknown),
    startedAt: row.started_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
  };
}

const TERMINAL_SQL = `(${TERMINAL_MIGRATION_STATES.map((s) => `'${s}'`).join(', ')})`;

/** The journal of one agent. Open it with {@link openJournal}; close it on shutdown. */
export class Journal {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly now: Clock;

  /** @internal use {@link openJournal} */
  constructor(db: Database.Database, path: string, now: Clock) {
    this.db = db;
    this.path = path;
    this.now = now;
  }

  /** The schema version of the open database. */
  schemaVersion(): number {
    return currentSchemaVersion(this.db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // --- VMs

  /** Records a VM, or replaces everything but its creation time if it is already known. */
  upsertVm(vm: VmInput): VmRecord {
    const state = checkOneOf(vm.state, VM_STATES, 'VM state');
    const now = this.now();
    this.db
      .prepare(
        `INSERT INTO vms (name, spec, state, pid, qmp_socket, serial_log, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, state = excluded.state, pid = excluded.pid,
           qmp_socket = excluded.qmp_socket, serial_log = excluded.serial_log, updated_at = excluded.updated_at`,
      )
      .run(
        vm.name,
        toJson(vm.spec, `spec of VM '${vm.name}'`),
        state,
        vm.pid ?? null,
        vm.qmpSocket,
        vm.serialLog,
        now,
        now,
      );
    return this.requireVm(vm.name);
  }

  getVm(name: string): VmRecord | undefined {
    const row = this.db.prepare<[string], VmRow>('SELECT * FROM vms WHERE name = ?').get(name);
    return row === undefined ? undefined : vmFromRow(row);
  }

  /** Every VM, by name. */
  listVms(): VmRecord[] {
    return this.db.prepare<[], VmRow>('SELECT * FROM vms ORDER BY name').all().map(vmFromRow);
  }

  /** Changes a VM's state and, when given, its pid (null once QEMU is gone). */
  setVmState(name: string, state: VmState, extra: { pid?: number | null } = {}): VmRecord {
    checkOneOf(state, VM_STATES, 'VM state');
    const result =
      extra.pid === undefined
        ? this.db
            .prepare('UPDATE vms SET state = ?, updated_at = ? WHERE name = ?')
            .run(state, this.now(), name)
        : this.db
            .prepare('UPDATE vms SET state = ?, pid = ?, updated_at = ? WHERE name = ?')
            .run(state, extra.pid, this.now(), name);
    if (result.changes === 0) throw new NotFoundError(`no VM named '${name}' in the journal`);
    return this.requireVm(name);
  }

  /** Forgets a VM; false if it was not known. Its migrations stay. */
  deleteVm(name: string): boolean {
    return this.db.prepare('DELETE FROM vms WHERE name = ?').run(name).changes > 0;
  }

  private requireVm(name: string): VmRecord {
    const vm = this.getVm(name);
    if (vm === undefined) throw new NotFoundError(`no VM named '${name}' in the journal`);
    return vm;
  }

  // --- Migrations

  /** Records a new migration and its first event. */
  createMigration(input: MigrationInput): MigrationRecord {
    const state = checkOneOf(input.state ?? 'pending', MIGRATION_STATES, 'migration state');
    const role = checkOneOf(input.role, ['source', 'destination'] as const, 'migration role');
    const plan = toJson(input.plan, `plan of migration '${input.id}'`);
    const now = this.now();
    this.db.transaction(() => {
      if (this.getMigration(input.id) !== undefined) {
        throw new ConflictError(`a migration with id '${input.id}' is already in the journal`);
      }
      this.db
        .prepare(
          `INSERT INTO migrations (id, vm, role, peer, transport, plan, state, started_at, updated_at, finished_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          input.id,
          input.vm,
          role,
          input.peer,
          input.transport,
          plan,
          state,
          now,
          now,
          isTerminalMigrationState(state) ? now : null,
        );
      this.addEvent(input.id, now, null, state, input.message ?? null);
    })();
    return this.requireMigration(input.id);
  }

  /**
   * Moves a migration to `state`, recording an event (message defaults to the
   * error). A terminal migration cannot change any more: ConflictError.
   */
  setMigrationState(id: string, state: MigrationState, change: StateChange = {}): MigrationRecord {
    checkOneOf(state, MIGRATION_STATES, 'migration state');
    const report =
      change.report === undefined ? undefined : toJson(change.report, `report of migration '${id}'`);
    this.db.transaction(() => {
      const current = this.requireMigration(id);
      if (isTerminalMigrationState(current.state)) {
        throw new ConflictError(`migration '${id}' is already ${current.state}; it cannot become ${state}`);
      }
      this.transition(
        current,
        state,
        change.error ?? null,
        report ?? null,
        change.message ?? change.error ?? null,
      );
    })();
    return this.requireMigration(id);
  }

  getMigration(id: string): MigrationRecord | undefined {
    const row = this.db.prepare<[string], MigrationRow>('SELECT * FROM migrations WHERE id = ?').get(id);
    return row === undefined ? undefined : migrationFromRow(row);
  }

  /** Migrations, newest first, optionally of one VM and only active (or only finished) ones. */
  listMigrations(filter: ListMigrationsFilter = {}): MigrationRecord[] {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.vm !== undefined) {
      where.push('vm = ?');
      params.push(filter.vm);
    }
    if (filter.active !== undefined) where.push(`state ${filter.active ? 'NOT IN' : 'IN'} ${TERMINAL_SQL}`);
    const sql = `SELECT * FROM migrations ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY started_at DESC, rowid DESC`;
    return this.db
      .prepare<string[], MigrationRow>(sql)
      .all(...params)
      .map(migrationFromRow);
  }

  /** Journals a file or folder the migration is about to make (before it exists). */
  fileCreating(id: string, path: string, kind: MigrationFile['kind']): void {
    checkOneOf(kind, ['image', 'folder'] as const, 'file kind');
    this.db
      .prepare(
        `INSERT INTO migration_files (migration_id, path, kind, state, seq)
         VALUES (?, ?, ?, 'creating', (SELECT COUNT(*) FROM migration_files WHERE migration_id = ?))`,
      )
      .run(id, path, kind, id);
  }

  /** The file or folder journaled with fileCreating exists now: the migration made it. */
  fileCreated(id: string, path: string): void {
    const { changes } = this.db
      .prepare("UPDATE migration_files SET state = 'created' WHERE migration_id = ? AND path = ?")
      .run(id, path);
    if (changes !== 1) throw new NotFoundError(`migration '${id}' journaled no file ${path}`);
  }

  /** The files and folders a migration journaled, in the order it journaled them. */
  migrationFiles(id: string): MigrationFile[] {
    return this.db
      .prepare<[string], MigrationFile>(
        'SELECT path, kind, state FROM migration_files WHERE migration_id = ? ORDER BY seq',
      )
      .all(id);
  }

  // --- calibrations

  /** Records a finished calibration; `result` is JSON-serializable (the caller reads it back). */
  addCalibration(c: { id: string; peer: string; startedAt: number; result: unknown }): CalibrationRecord {
    const finishedAt = this.now();
    this.db
      .prepare('INSERT INTO calibrations (id, peer, started_at, finished_at, result) VALUES (?, ?, ?, ?, ?)')
      .run(c.id, c.peer, c.startedAt, finishedAt, JSON.stringify(c.result));
    return { id: c.id, peer: c.peer, startedAt: c.startedAt, finishedAt, result: c.result };
  }

  /** Calibrations, newest first; of one peer when given. */
  listCalibrations(peer?: string): CalibrationRecord[] {
    const rows =
      peer === undefined
        ? this.db
            .prepare<[], CalibrationRow>('SELECT * FROM calibrations ORDER BY finished_at DESC, rowid DESC')
            .all()
        : this.db
            .prepare<[string], CalibrationRow>(
              'SELECT * FROM calibrations WHERE peer = ? ORDER BY finished_at DESC, rowid DESC',
            )
            .all(peer);
    return rows.map((r) => ({
      id: r.id,
      peer: r.peer,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      result: JSON.parse(r.result) as unknown,
    }));
  }

  /** The state changes of a migration, oldest first. */
  migrationEvents(id: string): MigrationEvent[] {
    return this.db
      .prepare<[string], EventRow>(
        'SELECT time, from_state, to_state, message FROM migration_events WHERE migration_id = ? ORDER BY seq',
      )
      .all(id)
      .map((row) => ({
        time: row.time,
        from: row.from_state as MigrationState | null,
        to: row.to_state as MigrationState,
        message: row.message,
      }));
  }

  /** Records a progress sample of a migration. */
  addSample(id: string, sample: MigrationSample): void {
    if (this.getMigration(id) === undefined) throw new NotFoundError(`no migration '${id}' in the journal`);
    const { lastInsertRowid } = this.db
      .prepare(
        `INSERT INTO migration_samples (migration_id, time, elapsed_ms, status, transferred, remaining, total,
           dirty_rate, throughput_mbps, pass, expected_downtime_ms, cpu_throttle_pct, downtime_limit_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        sample.time,
        sample.elapsedMs,
        sample.status,
        sample.transferredBytes,
        sample.remainingBytes,
        sample.totalBytes,
        sample.dirtyRateBps,
        sample.throughputMbps,
        sample.pass,
        sample.expectedDowntimeMs,
        sample.cpuThrottlePct,
        sample.downtimeLimitMs ?? null,
      );
    const disk = this.db.prepare(
      `INSERT INTO migration_disk_samples (sample_seq, disk, transferred, remaining, total, dirty, ready)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const d of sample.disks ?? []) {
      disk.run(
        lastInsertRowid,
        d.disk,
        d.transferredBytes,
        d.remainingBytes,
        d.totalBytes,
        d.dirtyBytes,
        d.ready ? 1 : 0,
      );
    }
  }

  /** The samples of a migration in time order (ties in the order they were added). */
  samples(id: string): MigrationSample[] {
    return this.db
      .prepare<[string], SampleRow>(
        `SELECT s.seq, s.time, COALESCE(s.elapsed_ms, s.time - m.started_at) AS elapsed_ms, s.status, s.transferred,
           s.remaining, s.total, s.dirty_rate, s.throughput_mbps, s.pass, s.expected_downtime_ms,
           s.cpu_throttle_pct, s.downtime_limit_ms
         FROM migration_samples s JOIN migrations m ON m.id = s.migration_id
         WHERE s.migration_id = ? ORDER BY s.time, s.seq`,
      )
      .all(id)
      .map((row) => ({
        time: row.time,
        elapsedMs: row.elapsed_ms,
        status: row.status,
        transferredBytes: row.transferred,
        remainingBytes: row.remaining,
        totalBytes: row.total,
        dirtyRateBps: row.dirty_rate ?? 0,
        throughputMbps: row.throughput_mbps ?? 0,
        pass: row.pass,
        expectedDowntimeMs: row.expected_downtime_ms ?? 0,
        cpuThrottlePct: row.cpu_throttle_pct ?? 0,
        downtimeLimitMs: row.downtime_limit_ms ?? undefined,
        ...this.diskSamples(row.seq),
      }));
  }

  /** The disks of one sample (none for a live migration). */
  private diskSamples(seq: number): Pick<MigrationSample, 'disks'> {
    const rows = this.db
      .prepare<
        [number],
        { disk: number; transferred: number; remaining: number; total: number; dirty: number; ready: number }
      >(
        'SELECT disk, transferred, remaining, total, dirty, ready FROM migration_disk_samples WHERE sample_seq = ? ORDER BY disk',
      )
      .all(seq);
    if (rows.length === 0) return {};
    return {
      disks: rows.map((r) => ({
        disk: r.disk,
        transferredBytes: r.transferred,
        remainingBytes: r.remaining,
        totalBytes: r.total,
        dirtyBytes: r.dirty,
        ready: r.ready === 1,
      })),
    };
  }

  /**
   * At agent start-up: marks every migration that was not over as failed with
   * `reason`, and returns them with the state they were in, so the agent can
   * make sure each source VM runs (and each half-received destination is
   * cleaned up). Migrations named in `except` are left as they are (a source
   * cut off during its hand-over is settled with its destination instead).
   */
  failInFlightMigrations(reason: string, except: readonly string[] = []): InterruptedMigration[] {
    return this.db.transaction(() => {
      const rows = this.db
        .prepare<[], MigrationRow>(
          `SELECT * FROM migrations WHERE state NOT IN ${TERMINAL_SQL} ORDER BY started_at, rowid`,
        )
        .all()
        .filter((row) => !except.includes(row.id));
      return rows.map((row) => {
        const current = migrationFromRow(row);
        this.transition(current, 'failed', reason, null, reason);
        return { ...this.requireMigration(current.id), previousState: current.state };
      });
    })();
  }

  /** A host-wide setting (e.g. maintenance mode), undefined when never set. */
  getSetting(key: string): string | undefined {
    return this.db
      .prepare<[string], { value: string }>('SELECT value FROM host_settings WHERE key = ?')
      .get(key)?.value;
  }

  setSetting(key: string, value: string): void {
    this.db
      .prepare(
        'INSERT INTO host_settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      )
      .run(key, value, this.now());
  }

  /** Saves a drain job (its whole state as JSON); `finished` stamps its end. */
  saveDrain(drain: { id: string; state: string; job: unknown; finished?: boolean }): void {
    const now = this.now();
    this.db
      .prepare(
        `INSERT INTO drains (id, state, job, started_at, updated_at, finished_at) VALUES (@id, @state, @job, @now, @now, @finished)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, job = excluded.job, updated_at = excluded.updated_at,
           finished_at = COALESCE(drains.finished_at, excluded.finished_at)`,
      )
      .run({
        id: drain.id,
        state: drain.state,
        job: JSON.stringify(drain.job),
        now,
        finished: drain.finished === true ? now : null,
      });
  }

  /** Drains, newest first; `active` only those not finished. */
  listDrains(
    filter: { active?: boolean } = {},
  ): { id: string; state: string; job: unknown; startedAt: number; finishedAt: number | null }[] {
    const rows = this.db
      .prepare<
        [],
        { id: string; state: string; job: string; started_at: number; finished_at: number | null }
      >(
        `SELECT id, state, job, started_at, finished_at FROM drains ${filter.active === true ? 'WHERE finished_at IS NULL' : ''} ORDER BY started_at DESC, rowid DESC`,
      )
      .all();
    return rows.map((r) => ({
      id: r.id,
      state: r.state,
      job: JSON.parse(r.job) as unknown,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
    }));
  }

  /**
   * Forgets what is older than `retentionDays` (by the journal's clock): finished
   * migrations that ended before then, with their events and samples, and any
   * sample taken before then. Migrations still in flight are kept. 0 keeps all.
   */
  prune(retentionDays: number): PruneResult {
    if (!Number.isFinite(retentionDays) || retentionDays < 0)
      throw new UsageError(`journal retention must be a number of days >= 0, got ${retentionDays}`);
    if (retentionDays === 0) return { migrations: 0, samples: 0 };
    const cutoff = this.now() - retentionDays * DAY_MS;
    return this.db.transaction(() => {
      const old = `SELECT id FROM migrations WHERE state IN ${TERMINAL_SQL} AND finished_at < ?`;
      const samples =
        this.db.prepare(`DELETE FROM migration_samples WHERE migration_id IN (${old})`).run(cutoff).changes +
        this.db.prepare('DELETE FROM migration_samples WHERE time < ?').run(cutoff).changes;
      this.db.prepare(`DELETE FROM migration_events WHERE migration_id IN (${old})`).run(cutoff);
      const migrations = this.db
        .prepare(`DELETE FROM migrations WHERE state IN ${TERMINAL_SQL} AND finished_at < ?`)
        .run(cutoff).changes;
      return { migrations, samples };
    })();
  }

  private transition(
    current: MigrationRecord,
    to: MigrationState,
    error: string | null,
    report: string | null,
    message: string | null,
  ): void {
    const now = this.now();
    this.db
      .prepare(
        `UPDATE migrations SET state = ?, error = COALESCE(?, error), report = COALESCE(?, report), updated_at = ?,
           finished_at = ? WHERE id = ?`,
      )
      .run(to, error, report, now, isTerminalMigrationState(to) ? now : null, current.id);
    this.addEvent(current.id, now, current.state, to, message);
  }

  private addEvent(
    id: string,
    time: number,
    from: MigrationState | null,
    to: MigrationState,
    message: string | null,
  ): void {
    this.db
      .prepare(
        'INSERT INTO migration_events (migration_id, time, from_state, to_state, message) VALUES (?, ?, ?, ?, ?)',
      )
      .run(id, time, from, to, message);
  }

  private requireMigration(id: string): MigrationRecord {
    const migration = this.getMigration(id);
    if (migration === undefined) throw new NotFoundError(`no migration '${id}' in the journal`);
    return migration;
  }
}

function currentSchemaVersion(db: Database.Database): number {
  const row = db
    .prepare<[], { version: number | null }>('SELECT MAX(version) AS version FROM schema_version')
    .get();
  return row?.version ?? 0;
}

function upgradeSchema(db: Database.Database, path: string, now: Clock): void {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT',
  );
  const current = currentSchemaVersion(db);
  if (current > JOURNAL_SCHEMA_VERSION) {
    throw new JournalError(
      `the journal ${path} has schema version ${current}, newer than this vmferry understands (${JOURNAL_SCHEMA_VERSION})`,
      path,
      { hint: 'run the vmferry version that wrote it, or move the journal aside' },
    );
  }
  for (const step of SCHEMA_STEPS) {
    if (step.version <= current) continue;
    db.transaction(() => {
      db.exec(step.sql);
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(step.version, now());
    }).immediate();
  }
}

export interface OpenJournalOptions {
  now: Clock;
}

/**
 * Opens (creating if needed) the journal at `path` and brings its schema up to
 * date. The agent opens it once and keeps it for its lifetime.
 */
export function openJournal(path: string, { now }: OpenJournalOptions): Journal {
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    upgradeSchema(db, path, now);
    return new Journal(db, path, now);
  } catch (err) {
    db?.close();
    if (err instanceof JournalError) throw err;
    throw new JournalError(`cannot open the journal ${path}: ${describeError(err)}`, path, {
      hint: 'check that the state directory exists and is writable, and that the file is an SQLite database',
      cause: err,
    });
  }
}
