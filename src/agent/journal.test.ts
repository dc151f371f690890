import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { ConflictError, JournalError, NotFoundError, UsageError } from '../errors.js';
import type { MigrationSample, MigrationState } from '../migration/index.js';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';
import { JOURNAL_SCHEMA_VERSION, type Journal, openJournal } from './journal.js';

function sample(time: number, transferred: number, pass = 1): MigrationSample {
  return {
    time,
    elapsedMs: time - 50,
    status: 'active',
    transferredBytes: transferred,
    remainingBytes: 1000 - transferred,
    totalBytes: 1000,
    dirtyRateBps: 12.5,
    throughputMbps: 9400.5,
    pass,
    expectedDowntimeMs: 0,
    cpuThrottlePct: 0,
    downtimeLimitMs: undefined,
  };
}

const settings = EXAMPLE_SETTINGS;

describe('agent journal', () => {
  let root: string;
  let path: string;
  let clock: number;
  let journal: Journal;
  const now = (): number => clock;
  let n = 0;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-journal-test-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(() => {
    journal?.close();
    n += 1;
    path = join(root, `journal-${n}.sqlite`);
    clock = 1_700_000_000_000;
    journal = openJournal(path, { now });
  });

  it('opens in WAL mode with full sync, at the current schema version', () => {
    assert.equal(journal.schemaVersion(), JOURNAL_SCHEMA_VERSION);
    assert.equal(JOURNAL_SCHEMA_VERSION, 6);
    journal.close();
    const db = new Database(path, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      const applied = db.prepare('SELECT version, applied_at FROM schema_version').all();
      assert.deepEqual(applied, [
        { version: 1, applied_at: clock },
        { version: 2, applied_at: clock },
        { version: 3, applied_at: clock },
        { version: 4, applied_at: clock },
        { version: 5, applied_at: clock },
        { version: 6, applied_at: clock },
      ]);
    } finally {
      db.close();
    }
    journal = openJournal(path, { now });
  });

  it('keeps calibrations per peer, newest first, across a reopen', () => {
    journal.addCalibration({
      id: 'c1',
      peer: 'https://b:7700',
      startedAt: clock - 5000,
      result: { gbps: 1 },
    });
    clock += 60_000;
    journal.addCalibration({
      id: 'c2',
      peer: 'https://c:7700',
      startedAt: clock - 5000,
      result: { gbps: 2 },
    });
    clock += 60_000;
    journal.addCalibration({
      id: 'c3',
      peer: 'https://b:7700',
      startedAt: clock - 5000,
      result: { gbps: 3 },
    });
    journal.close();
    journal = openJournal(path, { now });
    assert.deepEqual(
      journal.listCalibrations('https://b:7700').map((c) => [c.id, c.finishedAt, c.result]),
      [
        ['c3', clock, { gbps: 3 }],
        ['c1', clock - 120_000, { gbps: 1 }],
      ],
    );
    assert.deepEqual(
      journal.listCalibrations().map((c) => c.id),
      ['c3', 'c2', 'c1'],
    );
  });

  it('round-trips VMs, keeping the creation time on update', () => {
    const spec = { memoryMiB: 256, cpus: 1, disks: [], kernel: 'guest.elf' };
    const vm = journal.upsertVm({
      name: 'vm1',
      spec,
      state: 'starting',
      qmpSocket: '/run/vm1.qmp',
      serialLog: '/run/vm1.log',
    });
    assert.deepEqual(vm, {
      name: 'vm1',
      spec,
      state: 'starting',
      pid: null,
      qmpSocket: '/run/vm1.qmp',
      serialLog: '/run/vm1.log',
      createdAt: clock,
      updatedAt: clock,
    });
    clock += 1000;
    const running = journal.setVmState('vm1', 'running', { pid: 4242 });
    assert.equal(running.state, 'running');
    assert.equal(running.pid, 4242);
    assert.equal(running.updatedAt, clock);
    clock += 1000;
    const updated = journal.upsertVm({
      ...vm,
      spec: { ...spec, memoryMiB: 512 },
      state: 'running',
      pid: 4242,
    });
    assert.equal(updated.createdAt, clock - 2000);
    assert.deepEqual(updated.spec, { ...spec, memoryMiB: 512 });
    assert.equal(journal.setVmState('vm1', 'stopped', { pid: null }).pid, null);
    assert.equal(journal.setVmState('vm1', 'running').pid, null, 'pid untouched when not given');

    journal.upsertVm({ name: 'a-vm', spec: {}, state: 'incoming', qmpSocket: 'q', serialLog: 's' });
    assert.deepEqual(
      journal.listVms().map((v) => v.name),
      ['a-vm', 'vm1'],
    );
    assert.equal(journal.getVm('nope'), undefined);
    assert.equal(journal.deleteVm('a-vm'), true);
    assert.equal(journal.deleteVm('a-vm'), false);
    assert.throws(() => journal.setVmState('a-vm', 'running'), NotFoundError);
  });

  it('rejects unknown states and specs that are not JSON', () => {
    const base = { name: 'vm1', spec: {}, qmpSocket: 'q', serialLog: 's' };
    assert.throws(
      () => journal.upsertVm({ ...base, state: 'exploded' as 'running' }),
      (err: unknown) => err instanceof UsageError && err.message.includes("'exploded'"),
    );
    assert.throws(() => journal.upsertVm({ ...base, state: 'running', spec: undefined }), UsageError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => journal.upsertVm({ ...base, state: 'running', spec: cyclic }), UsageError);
    assert.deepEqual(journal.listVms(), []);
  });

  it('records migration state transitions as events, and keeps terminal states final', () => {
    const plan = settings;
    const created = journal.createMigration({
      id: 'm1',
      vm: 'vm1',
      role: 'source',
      peer: 'host-b',
      transport: 'native',
      plan,
      message: 'asked by operator',
    });
    assert.equal(created.state, 'pending');
    assert.deepEqual(created.plan, plan);
    assert.equal(created.startedAt, clock);
    assert.equal(created.finishedAt, null);
    assert.throws(
      () =>
        journal.createMigration({
          id: 'm1',
          vm: 'vm1',
          role: 'source',
          peer: 'x',
          transport: 'native',
          plan,
        }),
      ConflictError,
    );

    const path: [MigrationState, number][] = [
      ['preparing', 100],
      ['migrating', 200],
      ['completing', 5000],
    ];
    for (const [state, dt] of path) {
      clock += dt;
      assert.equal(journal.setMigrationState('m1', state).state, state);
    }
    clock += 50;
    const report = { status: 'completed', downtimeMs: 42, gbps: 9.4 };
    const done = journal.setMigrationState('m1', 'completed', { report, message: 'switched over' });
    assert.deepEqual(done.report, report);
    assert.equal(done.finishedAt, clock);
    assert.equal(done.error, null);

    assert.deepEqual(journal.migrationEvents('m1'), [
      { time: 1_700_000_000_000, from: null, to: 'pending', message: 'asked by operator' },
      { time: 1_700_000_000_100, from: 'pending', to: 'preparing', message: null },
      { time: 1_700_000_000_300, from: 'preparing', to: 'migrating', message: null },
      { time: 1_700_000_005_300, from: 'migrating', to: 'completing', message: null },
      { time: 1_700_000_005_350, from: 'completing', to: 'completed', message: 'switched over' },
    ]);
    assert.throws(
      () => journal.setMigrationState('m1', 'failed', { error: 'late' }),
      (err: unknown) => err instanceof ConflictError && /already completed/.test(err.message),
    );
    assert.equal(journal.migrationEvents('m1').length, 5);
    assert.throws(() => journal.setMigrationState('nope', 'migrating'), NotFoundError);
  });

  it("keeps the files a destination makes, journaled before each exists, in order; they go with the migration's record", () => {
    journal.createMigration({
      id: 'mf',
      vm: 'vm1',
      role: 'destination',
      peer: 'host-a',
      transport: 'native',
      plan: settings,
    });
    journal.fileCreating('mf', '/i/web-1', 'folder');
    journal.fileCreated('mf', '/i/web-1');
    journal.fileCreating('mf', '/i/web-1/disk.qcow2', 'image');
    assert.deepEqual(journal.migrationFiles('mf'), [
      { path: '/i/web-1', kind: 'folder', state: 'created' },
      { path: '/i/web-1/disk.qcow2', kind: 'image', state: 'creating' },
    ]);
    journal.fileCreated('mf', '/i/web-1/disk.qcow2');
    assert.equal(journal.migrationFiles('mf')[1]?.state, 'created');
    assert.throws(
      () => journal.fileCreated('mf', '/i/other.qcow2'),
      (err: unknown) =>
        err instanceof NotFoundError && err.message === "migration 'mf' journaled no file /i/other.qcow2",
    );
    assert.throws(
      () => journal.fileCreating('mf', '/i/x', 'socket' as 'image'),
      /invalid file kind 'socket': expected one of image, folder/,
    );
    assert.deepEqual(journal.migrationFiles('unknown'), []);
    clock += 10 * 86_400_000;
    journal.setMigrationState('mf', 'failed', { error: 'gave up' });
    clock += 10 * 86_400_000;
    journal.prune(1);
    assert.deepEqual(journal.migrationFiles('mf'), []);
  });

  it('uses the error as the event message of a failure', () => {
    journal.createMigration({
      id: 'm2',
      vm: 'vm1',
      role: 'destination',
      peer: 'host-a',
      transport: 'tunnelled',
      plan: { ...settings, transport: 'tunnelled' },
    });
    const failed = journal.setMigrationState('m2', 'failed', { error: 'destination QEMU exited (signal 9)' });
    assert.equal(failed.error, 'destination QEMU exited (signal 9)');
    assert.equal(journal.migrationEvents('m2').at(-1)?.message, 'destination QEMU exited (signal 9)');
  });

  it('lists migrations newest first, by VM and by activity', () => {
    const make = (id: string, vm: string, state: MigrationState): void => {
      clock += 1000;
      journal.createMigration({
        id,
        vm,
        role: 'source',
        peer: 'host-b',
        transport: 'native',
        plan: settings,
        state,
      });
    };
    make('old', 'vm1', 'pending');
    journal.setMigrationState('old', 'completed');
    make('mid', 'vm2', 'migrating');
    make('new', 'vm1', 'preparing');
    assert.deepEqual(
      journal.listMigrations().map((m) => m.id),
      ['new', 'mid', 'old'],
    );
    assert.deepEqual(
      journal.listMigrations({ vm: 'vm1' }).map((m) => m.id),
      ['new', 'old'],
    );
    assert.deepEqual(
      journal.listMigrations({ active: true }).map((m) => m.id),
      ['new', 'mid'],
    );
    assert.deepEqual(
      journal.listMigrations({ active: false }).map((m) => m.id),
      ['old'],
    );
    assert.deepEqual(
      journal.listMigrations({ vm: 'vm1', active: true }).map((m) => m.id),
      ['new'],
    );
  });

  it('keeps samples in time order', () => {
    journal.createMigration({
      id: 'm3',
      vm: 'vm1',
      role: 'source',
      peer: 'host-b',
      transport: 'native',
      plan: settings,
    });
    journal.addSample('m3', sample(300, 600, 2));
    journal.addSample('m3', sample(100, 200));
    journal.addSample('m3', sample(200, 400));
    journal.addSample('m3', {
      ...sample(300, 650, 2),
      status: 'device',
      dirtyRateBps: 0,
      throughputMbps: 0,
      cpuThrottlePct: 30,
      expectedDowntimeMs: 12.5,
      downtimeLimitMs: 300,
    });
    const got = journal.samples('m3');
    assert.deepEqual(
      got.map((s) => [s.time, s.transferredBytes]),
      [
        [100, 200],
        [200, 400],
        [300, 600],
        [300, 650],
      ],
    );
    assert.deepEqual(got[0], sample(100, 200));
    assert.equal(got[3]?.status, 'device');
    assert.equal(got[3]?.cpuThrottlePct, 30);
    assert.equal(got[3]?.expectedDowntimeMs, 12.5);
    assert.equal(got[3]?.downtimeLimitMs, 300);
    assert.deepEqual(journal.samples('other'), []);
    assert.throws(() => journal.addSample('other', sample(1, 1)), NotFoundError);
  });

  it('keeps each copied disk of a block migration sample, and drops them with their sample', () => {
    journal.createMigration({
      id: 'm5',
      vm: 'vm1',
      role: 'source',
      peer: 'host-b',
      transport: 'native',
      plan: settings,
    });
    const disks = [
      { disk: 0, transferredBytes: 100, remainingBytes: 50, totalBytes: 150, dirtyBytes: 4096, ready: false },
      { disk: 2, transferredBytes: 7, remainingBytes: 0, totalBytes: 7, dirtyBytes: 0, ready: true },
    ];
    journal.addSample('m5', { ...sample(100, 0), status: 'none', disks });
    journal.addSample('m5', sample(200, 10));
    const got = journal.samples('m5');
    assert.deepEqual(got[0]?.disks, disks);
    assert.equal(got[1]?.disks, undefined, 'a sample without disks has none');
    assert.deepEqual(got[1], sample(200, 10));
  });

  it('keeps everything across close and reopen', () => {
    journal.upsertVm({
      name: 'vm1',
      spec: { memoryMiB: 256 },
      state: 'running',
      pid: 99,
      qmpSocket: 'q',
      serialLog: 's',
    });
    journal.createMigration({
      id: 'm4',
      vm: 'vm1',
      role: 'source',
      peer: 'host-b',
      transport: 'native',
      plan: settings,
    });
    journal.setMigrationState('m4', 'migrating');
    journal.addSample('m4', sample(10, 100));
    const before = {
      vms: journal.listVms(),
      migration: journal.getMigration('m4'),
      events: journal.migrationEvents('m4'),
      samples: journal.samples('m4'),
    };
    journal.close();
    journal.close();
    journal = openJournal(path, { now });
    assert.deepEqual(
      {
        vms: journal.listVms(),
        migration: journal.getMigration('m4'),
        events: journal.migrationEvents('m4'),
        samples: journal.samples('m4'),
      },
      before,
    );
    assert.equal(journal.schemaVersion(), JOURNAL_SCHEMA_VERSION);
  });

  it('fails only the migrations that were in flight, reporting the state they were in', () => {
    const states: MigrationState[] = [
      'pending',
      'preparing',
      'migrating',
      'completing',
      'postcopy',
      'completed',
      'failed',
      'cancelled',
    ];
    for (const state of states) {
      clock += 10;
      journal.createMigration({
        id: `m-${state}`,
        vm: `vm-${state}`,
        role: 'source',
        peer: 'host-b',
        transport: 'native',
        plan: settings,
        state,
      });
    }
    const finishedBefore = ['completed', 'failed', 'cancelled'].map((s) => journal.getMigration(`m-${s}`));
    clock += 1000;
    const interrupted = journal.failInFlightMigrations('agent restarted during the migration');
    assert.deepEqual(
      interrupted.map((m) => [m.id, m.previousState, m.state]),
      [
        ['m-pending', 'pending', 'failed'],
        ['m-preparing', 'preparing', 'failed'],
        ['m-migrating', 'migrating', 'failed'],
        ['m-completing', 'completing', 'failed'],
        ['m-postcopy', 'postcopy', 'failed'],
      ],
    );
    for (const m of interrupted) {
      assert.equal(m.error, 'agent restarted during the migration');
      assert.equal(m.finishedAt, clock);
      assert.deepEqual(journal.migrationEvents(m.id).at(-1), {
        time: clock,
        from: m.previousState,
        to: 'failed',
        message: 'agent restarted during the migration',
      });
    }
    assert.deepEqual(
      ['completed', 'failed', 'cancelled'].map((s) => journal.getMigration(`m-${s}`)),
      finishedBefore,
    );
    assert.deepEqual(journal.failInFlightMigrations('again'), []);
    assert.deepEqual(journal.listMigrations({ active: true }), []);
  });

  it('leaves the migrations it is told to keep in flight (a hand-over to settle)', () => {
    for (const state of ['migrating', 'completing'] as const) {
      journal.createMigration({
        id: `k-${state}`,
        vm: `vk-${state}`,
        role: 'source',
        peer: 'b',
        transport: 'native',
        plan: settings,
      });
      journal.setMigrationState(`k-${state}`, state);
    }
    const interrupted = journal.failInFlightMigrations('restarted', ['k-completing']);
    assert.deepEqual(
      interrupted.map((m) => m.id),
      ['k-migrating'],
    );
    assert.equal(journal.getMigration('k-completing')?.state, 'completing');
    assert.deepEqual(
      journal.listMigrations({ active: true }).map((m) => m.id),
      ['k-completing'],
    );
  });

  it('upgrades a version 1 journal: its samples count their elapsed time from the start of the migration', () => {
    journal.close();
    const old = join(root, 'version-1.sqlite');
    const db = new Database(old);
    db.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT');
    db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (1, 0)').run();
    db.exec(`
      CREATE TABLE vms (name TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER,
        qmp_socket TEXT NOT NULL, serial_log TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;
      CREATE TABLE migrations (id TEXT PRIMARY KEY, vm TEXT NOT NULL, role TEXT NOT NULL, peer TEXT NOT NULL,
        transport TEXT NOT NULL, plan TEXT NOT NULL, state TEXT NOT NULL, error TEXT, report TEXT,
        started_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, finished_at INTEGER) STRICT;
      CREATE TABLE migration_events (seq INTEGER PRIMARY KEY, migration_id TEXT NOT NULL REFERENCES migrations (id)
        ON DELETE CASCADE, time INTEGER NOT NULL, from_state TEXT, to_state TEXT NOT NULL, message TEXT) STRICT;
      CREATE TABLE migration_samples (seq INTEGER PRIMARY KEY, migration_id TEXT NOT NULL REFERENCES migrations (id)
        ON DELETE CASCADE, time INTEGER NOT NULL, status TEXT NOT NULL, transferred INTEGER NOT NULL,
        remaining INTEGER NOT NULL, total INTEGER NOT NULL, dirty_rate REAL, throughput_mbps REAL,
        pass INTEGER NOT NULL, expected_downtime_ms REAL, cpu_throttle_pct REAL) STRICT;
      INSERT INTO migrations VALUES ('m-old', 'vm1', 'source', 'host-b', 'native', '{}', 'completed', NULL, NULL,
        1000, 3000, 3000);
      INSERT INTO migration_samples (migration_id, time, status, transferred, remaining, total, dirty_rate,
        throughput_mbps, pass, expected_downtime_ms, cpu_throttle_pct)
        VALUES ('m-old', 2500, 'active', 10, 90, 100, NULL, 800, 1, NULL, 0);
    `);
    db.close();
    journal = openJournal(old, { now });
    assert.equal(journal.schemaVersion(), JOURNAL_SCHEMA_VERSION);
    assert.deepEqual(journal.samples('m-old'), [
      {
        time: 2500,
        elapsedMs: 1500,
        status: 'active',
        transferredBytes: 10,
        remainingBytes: 90,
        totalBytes: 100,
        dirtyRateBps: 0,
        throughputMbps: 800,
        pass: 1,
        expectedDowntimeMs: 0,
        cpuThrottlePct: 0,
        downtimeLimitMs: undefined,
      },
    ]);
  });

  it('refuses a journal from a newer vmferry, and a file that is not a database', async () => {
    journal.close();
    const db = new Database(path);
    db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(99, 0);
    db.close();
    assert.throws(
      () => openJournal(path, { now }),
      (err: unknown) =>
        err instanceof JournalError && /schema version 99/.test(err.message) && err.file === path,
    );
    const garbage = join(root, 'garbage.sqlite');
    await writeFile(garbage, 'this is not an SQLite database, not even close; '.repeat(100));
    assert.throws(
      () => openJournal(garbage, { now }),
      (err: unknown) => err instanceof JournalError && err.message.includes(garbage),
    );
    assert.throws(() => openJournal(join(root, 'missing-dir', 'j.sqlite'), { now }), JournalError);
    journal = openJournal(join(root, 'fresh.sqlite'), { now });
  });
});

describe('journal: host settings and drains', () => {
  it('keeps a setting across reopening, and the last value wins', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmf-journal-settings-'));
    try {
      const path = join(dir, 'journal.sqlite');
      let journal = openJournal(path, { now: () => 1 });
      assert.equal(journal.getSetting('maintenance'), undefined);
      journal.setSetting('maintenance', 'on');
      journal.setSetting('maintenance', 'off');
      journal.setSetting('maintenance', 'on');
      journal.close();
      journal = openJournal(path, { now: () => 2 });
      assert.equal(journal.getSetting('maintenance'), 'on');
      journal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('saves a drain job, lists active ones, and stamps the end once', () => {
    let t = 1000;
    const dir = mkdtempSync(join(tmpdir(), 'vmf-journal-drains-'));
    try {
      const journal = openJournal(join(dir, 'journal.sqlite'), { now: () => t });
      journal.saveDrain({ id: 'd1', state: 'running', job: { items: [1] } });
      t = 2000;
      journal.saveDrain({ id: 'd1', state: 'running', job: { items: [1, 2] } });
      assert.deepEqual(journal.listDrains({ active: true }), [
        { id: 'd1', state: 'running', job: { items: [1, 2] }, startedAt: 1000, finishedAt: null },
      ]);
      t = 3000;
      journal.saveDrain({ id: 'd1', state: 'done', job: { items: [] }, finished: true });
      t = 4000;
      journal.saveDrain({ id: 'd1', state: 'done', job: { items: [] }, finished: true });
      assert.deepEqual(journal.listDrains({ active: true }), []);
      assert.equal(journal.listDrains()[0]?.finishedAt, 3000);
      journal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
