import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AuthError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { ROLES } from '../pki/index.js';
import { API } from './api-client.js';
import {
  OTHER_ROUTES,
  ROUTE_ROLES,
  accessMatrix,
  accessRefusal,
  endpointOf,
  mayCall,
  routeNamed,
  routeTableMarkdown,
  type RouteName,
} from './route-access.js';

const routes = Object.keys(ROUTE_ROLES) as RouteName[];

describe('route access table', () => {
  it('has one row for every endpoint of the API table and every other route, and no more', () => {
    assert.deepEqual(routes.sort(), [...Object.keys(API), ...Object.keys(OTHER_ROUTES)].sort());
    for (const route of routes) assert.equal(routeNamed(endpointOf(route)), route);
  });

  it('lets only hosts prepare, drive and tunnel migrations on a destination', () => {
    const hostOnly = routes.filter((r) => ROUTE_ROLES[r].length === 1 && ROUTE_ROLES[r][0] === 'host');
    assert.deepEqual(hostOnly.sort(), [
      'abortIncoming',
      'checkDisks',
      'completeIncoming',
      'incomingGuest',
      'outgoingState',
      'preflight',
      'prepareIncoming',
      'recoverIncoming',
      'resumeIncoming',
      'tunnel',
    ]);
    for (const role of ['operator', 'viewer', 'metrics'] as const)
      for (const route of hostOnly) assert.equal(mayCall(role, route), false, `${role} ${route}`);
  });

  it('gives hosts nothing an operator does: no VM, no migration started, read or aborted', () => {
    const forHosts = routes.filter((r) => mayCall('host', r));
    for (const route of forHosts)
      assert.ok(route === 'host' || route === 'vmConsole' || !mayCall('operator', route), route);
  });

  it('lets viewers and metrics scrapers only read', () => {
    for (const role of ['viewer', 'metrics'] as const)
      for (const route of routes.filter((r) => mayCall(role, r)))
        assert.match(endpointOf(route), /^GET /, `${role} ${route}`);
    assert.deepEqual(
      routes.filter((r) => mayCall('metrics', r)),
      ['metrics'],
    );
  });

  it('lets nobody without a role in, and nobody into a route the table lacks', () => {
    for (const route of routes) assert.equal(mayCall(undefined, route), false);
    const none = accessRefusal({ commonName: 'old-op', role: undefined }, API.vms);
    assert.ok(none instanceof AuthError);
    assert.equal(
      none.message,
      'the certificate of "old-op" names no vmferry role (it may not call GET /v1/vms)',
    );
    const unknown = accessRefusal({ commonName: 'op', role: 'operator' }, 'POST /v1/debug');
    assert.ok(unknown instanceof AuthError);
    assert.equal(unknown.message, 'operator "op" may not call POST /v1/debug');
    assert.equal(unknown.hint, 'POST /v1/debug is not open to any certificate');
  });

  it('says which roles a refused route takes', () => {
    const refused = accessRefusal({ commonName: 'host-b', role: 'host' }, API.startMigration);
    assert.ok(refused instanceof AuthError);
    assert.equal(refused.message, 'host "host-b" may not call POST /v1/migrations');
    assert.equal(
      refused.hint,
      'POST /v1/migrations takes a certificate with role operator (vmferry ca issue --role)',
    );
    assert.equal(accessRefusal({ commonName: 'alice', role: 'viewer' }, API.migrations), undefined);
  });

  it('lists every role for every route', () => {
    const matrix = accessMatrix();
    assert.equal(matrix.length, routes.length * ROLES.length);
    assert.deepEqual(
      matrix.filter((m) => m.route === 'metrics' && m.allowed).map((m) => m.role),
      ['operator', 'viewer', 'metrics'],
    );
  });
});

describe('docs/security.md', () => {
  /** A markdown table's cells, row by row, without padding and without the |---| row. */
  const cells = (table: string): string[][] =>
    table
      .trim()
      .split('\n')
      .map((line) =>
        line
          .trim()
          .replace(/^\||\|$/g, '')
          .split('|')
          .map((c) => c.trim()),
      )
      .filter((row) => !row.every((c) => /^:?-+:?$/.test(c)));

  it('prints the route table of the code', () => {
    const doc = readFileSync(join(packageRoot(), 'docs', 'security.md'), 'utf8');
    const m = /<!-- route-table:start -->\n([\s\S]*?)\n<!-- route-table:end -->/.exec(doc);
    assert.ok(m !== null, 'docs/security.md has the route-table markers');
    assert.deepEqual(
      cells(m[1] ?? ''),
      cells(routeTableMarkdown()),
      "docs/security.md differs from the code's table: npm run build && node scripts/write-route-table.mjs",
    );
  });
});
