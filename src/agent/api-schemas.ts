/**
 * JSON schemas of the agent API: every body, query string and reply, by
 * endpoint ('METHOD /path'). Bodies and queries are closed (an unknown field
 * is refused, naming it); replies list what callers rely on and may carry more.
 * A VM spec is checked by validateVmSpec (its one definition, which also
 * refuses unknown fields), not here.
 */

type Schema = Record<string, unknown>;

export interface EndpointSchema {
  body?: Schema;
  querystring?: Schema;
  params?: Schema;
  /** The 2xx reply (none for a reply that is not JSON). */
  reply?: Schema;
}

const name = { type: 'string', minLength: 1, maxLength: 200 };
const id = { type: 'string', minLength: 1, maxLength: 100 };
/** A whole number >= 0 in a query string (which is text). */
const count = { type: 'string', pattern: '^[0-9]{1,9}$' };
const nonNegative = { type: 'number', minimum: 0 };

function closed(properties: Record<string, Schema>, required: string[] = []): Schema {
  return { type: 'object', properties, required, additionalProperties: false };
}

function open(properties: Record<string, Schema> = {}, required: string[] = []): Schema {
  return { type: 'object', properties, required, additionalProperties: true };
}

const EMPTY_BODY = closed({});

const OVERRIDES = closed({
  transport: { enum: ['native', 'tunnelled'] },
  tls: { type: 'boolean' },
  tunnel: { enum: ['multi', 'naive'] },
  relay: { enum: ['native', 'node'] },
  channels: { type: 'integer', minimum: 1 },
  bandwidthMiBps: nonNegative,
  completionTimeoutSeconds: nonNegative,
  timeoutAction: { enum: ['abort', 'force_complete'] },
  autoConverge: { type: 'boolean' },
  postCopy: { type: 'boolean' },
  stallSeconds: nonNegative,
  diskStallSeconds: nonNegative,
  block: { enum: ['all', 'auto'] },
  keepSourceDisks: { type: 'boolean' },
});

const MIGRATION_REQUEST = closed({ vm: name, to: { type: 'string', minLength: 1 }, options: OVERRIDES }, [
  'vm',
  'to',
]);

const VM_VIEW = open({ name, state: { type: 'string' } }, ['name', 'state']);
const MIGRATION_RECORD = open({ id, vm: name, role: { type: 'string' }, state: { type: 'string' } }, [
  'id',
  'state',
]);
const INCOMING_REPLY = open({ destinationHost: { type: 'string' } }, ['destinationHost']);
const EMPTY_REPLY = open();

/** What the source hands over when the guest starts on the destination: its console's last bytes. */
const HAND_OVER = closed({
  consoleTail: closed({ text: { type: 'string' }, end: { type: 'integer', minimum: 0 } }, ['text', 'end']),
});

const nameParam = closed({ name }, ['name']);
const idParam = closed({ id }, ['id']);

/** The error reply every endpoint answers with: {code, message, hint?}. */
export const ERROR_REPLY: Schema = closed(
  { code: { type: 'string' }, message: { type: 'string' }, hint: { type: 'string' } },
  ['code', 'message'],
);

export const API_SCHEMAS: Record<string, EndpointSchema> = {
  // Prometheus text, not JSON.
  'GET /metrics': {},
  'GET /v1/host': { reply: open({ name, accelerator: { type: 'string' } }, ['name']) },
  // `vmferry host calibrate`: trial migrations of a throwaway guest to the peer, through each secure transport.
  'POST /v1/host/calibrations': {
    body: closed(
      {
        peer: { type: 'string', minLength: 1, maxLength: 300 },
        memoryMiB: { type: 'integer', minimum: 64, maximum: 4096 },
        runs: { type: 'integer', minimum: 1, maximum: 5 },
      },
      ['peer'],
    ),
    reply: open({ id, peer: { type: 'string' }, date: { type: 'string' }, runs: { type: 'array' } }, [
      'id',
      'peer',
      'runs',
    ]),
  },
  'GET /v1/host/calibrations': {
    querystring: closed({ peer: { type: 'string', minLength: 1, maxLength: 300 } }),
    reply: closed({ calibrations: { type: 'array', items: open({ id }, ['id']) } }, ['calibrations']),
  },
  // What `vmferry plan --agent` shows: this agent's plan to a peer for a guest of that size, with its figures.
  'POST /v1/plan': {
    body: closed(
      { to: { type: 'string', minLength: 1, maxLength: 300 }, memoryMiB: { type: 'integer', minimum: 1 } },
      ['to', 'memoryMiB'],
    ),
    reply: open({ transport: { type: 'string' }, reasons: { type: 'array' }, figures: open() }, [
      'transport',
      'reasons',
      'figures',
    ]),
  },
  'GET /v1/vms': { reply: closed({ vms: { type: 'array', items: VM_VIEW } }, ['vms']) },
  'POST /v1/vms': { body: { type: 'object' }, reply: VM_VIEW },
  'GET /v1/vms/:name': { params: nameParam, reply: VM_VIEW },
  'GET /v1/vms/:name/health': {
    params: nameParam,
    querystring: closed({ afterSeq: count, minOk: count, waitMs: count }),
    reply: open({ state: { type: 'string' } }, ['state']),
  },
  // `hops`: how many agents passed the request on, following the VM's migrations.
  'GET /v1/vms/:name/console': {
    params: nameParam,
    querystring: closed({ after: count, lines: count, hops: count }),
    reply: open({ vm: name, host: { type: 'string' }, text: { type: 'string' } }, ['text']),
  },
  'POST /v1/vms/:name/stop': { params: nameParam, body: EMPTY_BODY, reply: closed({ stopped: name }) },
  'GET /v1/migrations': {
    reply: closed({ migrations: { type: 'array', items: MIGRATION_RECORD } }, ['migrations']),
  },
  'POST /v1/migrations': {
    body: MIGRATION_REQUEST,
    reply: open({ id, settings: open() }, ['id', 'settings']),
  },
  'POST /v1/migrations/dry-run': { body: MIGRATION_REQUEST, reply: open({ vm: name }, ['vm']) },
  'GET /v1/migrations/:id': { params: idParam, reply: MIGRATION_RECORD },
  'GET /v1/outgoing/:id': { params: idParam, reply: closed({ state: { type: 'string' } }, ['state']) },
  'GET /v1/migrations/:id/samples': {
    params: idParam,
    reply: closed({ samples: { type: 'array', items: open({ time: { type: 'number' } }) } }, ['samples']),
  },
  'POST /v1/migrations/:id/abort': {
    params: idParam,
    body: EMPTY_BODY,
    reply: closed({ aborting: id }),
  },
  'POST /v1/migrations/:id/force-complete': {
    params: idParam,
    body: EMPTY_BODY,
    reply: closed({ forcing: id }),
  },
  // The source's plan travels as it is (the destination reads what it needs); the spec is checked by validateVmSpec.
  'POST /v1/drains': {
    body: closed({
      to: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 300 } },
      parallel: { type: 'integer', minimum: 1, maximum: 64 },
      dryRun: { type: 'boolean' },
    }),
    reply: open({ host: name }, ['host']),
  },
  'GET /v1/drains': { reply: closed({ drains: { type: 'array' } }, ['drains']) },
  'GET /v1/drains/:id': { params: idParam, reply: open({ id, state: { type: 'string' } }, ['id', 'state']) },
  'GET /v1/peers': { reply: open({ self: open(), peers: { type: 'array' } }, ['self', 'peers']) },
  'POST /v1/host/maintenance': {
    body: closed({ on: { type: 'boolean' } }, ['on']),
    reply: open({ maintenance: { type: 'boolean' } }, ['maintenance']),
  },
  'POST /v1/preflight': {
    body: closed(
      {
        spec: { type: 'object' },
        source: open(
          { name, accelerator: { enum: ['kvm', 'tcg'] }, qemuVersion: { type: 'string', maxLength: 40 } },
          ['name', 'accelerator', 'qemuVersion'],
        ),
        disks: {
          type: 'array',
          maxItems: 8,
          items: closed(
            {
              path: { type: 'string', minLength: 1, maxLength: 4096 },
              sizeBytes: nonNegative,
              fingerprint: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            },
            ['path', 'sizeBytes', 'fingerprint'],
          ),
        },
      },
      ['spec', 'source'],
    ),
    reply: open({ host: name, checks: { type: 'array' } }, ['host', 'checks']),
  },
  'POST /v1/incoming': {
    body: closed(
      {
        migrationId: id,
        spec: { type: 'object' },
        settings: { type: 'object' },
        sourceHost: name,
        sourceAccelerator: { enum: ['kvm', 'tcg'] },
        sourceQemuVersion: { type: 'string', maxLength: 40 },
        sourceAddress: { type: 'string', maxLength: 300 },
        sourceInstancesPath: { type: 'string', minLength: 1, maxLength: 4096 },
      },
      ['migrationId', 'spec', 'settings', 'sourceHost'],
    ),
    reply: INCOMING_REPLY,
  },
  // Before a block migration: what the destination sees of each disk (checkDiskCheckRequest reads each field).
  'POST /v1/incoming/disks': {
    body: closed(
      {
        sourceInstancesPath: { type: 'string', minLength: 1, maxLength: 4096 },
        probe: closed(
          { name: { type: 'string', maxLength: 100 }, token: { type: 'string', maxLength: 100 } },
          ['name', 'token'],
        ),
        disks: {
          type: 'array',
          maxItems: 64,
          items: closed(
            {
              disk: { type: 'integer', minimum: 0 },
              storage: { enum: ['shared', 'local'] },
              path: { type: 'string', minLength: 1, maxLength: 4096 },
              probed: { type: 'boolean' },
              backing: closed({ name: { type: 'string', maxLength: 4096 }, identity: { type: 'object' } }, [
                'name',
                'identity',
              ]),
            },
            ['disk', 'storage', 'path', 'probed'],
          ),
        },
      },
      ['sourceInstancesPath', 'probe', 'disks'],
    ),
    reply: closed({ disks: { type: 'array', items: open({ disk: { type: 'integer' } }, ['disk']) } }, [
      'disks',
    ]),
  },
  'POST /v1/incoming/:id/resume': { params: idParam, body: HAND_OVER, reply: EMPTY_REPLY },
  'POST /v1/incoming/:id/recover': { params: idParam, body: EMPTY_BODY, reply: INCOMING_REPLY },
  'POST /v1/incoming/:id/complete': { params: idParam, body: HAND_OVER, reply: EMPTY_REPLY },
  'GET /v1/incoming/:id/guest': { params: idParam, reply: open({ state: { type: 'string' } }, ['state']) },
  'POST /v1/incoming/:id/abort': {
    params: idParam,
    body: closed({ reason: { type: 'string', maxLength: 2000 } }),
    reply: EMPTY_REPLY,
  },
};
