import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { decideTunnelRelay, describeRelays } from './decide-relay.js';

const built = { available: true } as const;
const missing = { available: false, reason: 'native/build/vmferry-relay is not built' } as const;

describe('tunnel relay', () => {
  it('auto: native when it is built, else node, saying why', () => {
    assert.deepEqual(decideTunnelRelay('auto', built), {
      kind: 'native',
      reason: 'the native relay ([vmferry] tunnel_relay = auto, and it is built)',
    });
    assert.deepEqual(decideTunnelRelay('auto', missing), {
      kind: 'node',
      reason:
        'the TypeScript relay ([vmferry] tunnel_relay = auto, and the native one is missing: native/build/vmferry-relay is not built)',
    });
  });

  it('node and native as asked; native asked for but missing is refused, naming why', () => {
    assert.equal(decideTunnelRelay('node', built).kind, 'node');
    assert.equal(decideTunnelRelay('native', built).kind, 'native');
    assert.throws(
      () => decideTunnelRelay('native', missing),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message ===
          '[vmferry] tunnel_relay = native, but the native relay cannot run here: native/build/vmferry-relay is not built' &&
        /scripts\/setup\.mjs/.test(err.hint ?? ''),
    );
  });

  it('the plan names each side’s relay for a tunnelled multi-channel stream only', () => {
    const native = decideTunnelRelay('auto', built);
    const reasons = describeRelays('tunnelled', 'multi', native, undefined);
    assert.deepEqual(reasons, [
      {
        decision: 'tunnel',
        option: 'vmferry.tunnel_relay',
        message:
          'relay: source native, the native relay ([vmferry] tunnel_relay = auto, and it is built); ' +
          'destination node, the TypeScript relay (an agent that does not say)',
      },
    ]);
    assert.deepEqual(describeRelays('native', 'multi', native, native), []);
    assert.deepEqual(describeRelays('tunnelled', 'naive', native, native), []);
    assert.deepEqual(describeRelays('tunnelled', 'multi', undefined, undefined), []);
    assert.deepEqual(describeRelays('tunnelled', 'multi', native, undefined, 'node'), [
      { decision: 'tunnel', message: 'relay: node at both ends (override)' },
    ]);
  });
});
