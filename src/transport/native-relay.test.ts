import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countEvent, encodeRelayConfig, nativeRelayAvailability, parseRelayEvent } from './native-relay.js';

describe('native relay: its stdin and stdout', () => {
  it('encodes the configuration as length-prefixed records, PEM newlines and all, skipping unset fields', () => {
    const pem = '-----BEGIN X-----\nAB\n-----END X-----\n';
    const text = encodeRelayConfig({
      mode: 'source',
      key: pem,
      remote_port: 7443,
      crl: undefined,
    }).toString();
    assert.equal(text, `mode 6\nsource\nkey ${pem.length}\n${pem}\nremote_port 4\n7443\n`);
    assert.equal(encodeRelayConfig({ token: 'é' }).toString(), 'token 2\né\n');
    assert.throws(() => encodeRelayConfig({ 'bad name': 'x' }), /native relay option bad name is not a name/);
  });

  it('parses each event it sends', () => {
    assert.deepEqual(parseRelayEvent('{"type":"ready","pid":12,"port":40001,"openssl":"OpenSSL 3.0.19"}'), {
      type: 'ready',
      pid: 12,
      port: 40001,
      openssl: 'OpenSSL 3.0.19',
    });
    assert.deepEqual(parseRelayEvent('{"type":"ready","pid":12,"path":"/run/x.sock","openssl":"O"}'), {
      type: 'ready',
      pid: 12,
      path: '/run/x.sock',
      openssl: 'O',
    });
    assert.deepEqual(
      parseRelayEvent(
        '{"type":"tunnel-refused","status":403,"reason":"wrong tunnel token for migration m","peerCommonName":"a","remoteAddress":"127.0.0.1:5"}',
      ),
      {
        type: 'tunnel-refused',
        migrationId: undefined,
        status: 403,
        reason: 'wrong tunnel token for migration m',
        peerCommonName: 'a',
        remoteAddress: '127.0.0.1:5',
      },
    );
    assert.deepEqual(
      parseRelayEvent(
        '{"type":"tunnel-connection-closed","role":"source","migrationId":"m","bytesFromQemu":5,"bytesToQemu":0,"index":1,"sendPath":"sealed","keyUpdatesSent":3,"receivePath":"opened","keyUpdatesReceived":2,"error":"QEMU\'s connection failed"}',
      ),
      {
        type: 'tunnel-connection-closed',
        role: 'source',
        migrationId: 'm',
        bytesFromQemu: 5,
        bytesToQemu: 0,
        error: "QEMU's connection failed",
        sendPath: 'sealed',
        keyUpdatesSent: 3,
        receivePath: 'opened',
        keyUpdatesReceived: 2,
      },
    );
    assert.deepEqual(
      parseRelayEvent(
        '{"type":"tunnel-connection-closed","role":"destination","migrationId":"m","bytesFromQemu":0,"bytesToQemu":7,"sendPath":"anything","keyUpdatesSent":-1,"receivePath":"sealed","keyUpdatesReceived":1.5}',
      ),
      {
        type: 'tunnel-connection-closed',
        role: 'destination',
        migrationId: 'm',
        bytesFromQemu: 0,
        bytesToQemu: 7,
      },
      'a path or count it does not know is left out',
    );
    assert.deepEqual(
      parseRelayEvent('{"type":"tunnel-connection-opened","role":"destination","migrationId":"m"}'),
      {
        type: 'tunnel-connection-opened',
        role: 'destination',
        migrationId: 'm',
      },
    );
    assert.deepEqual(
      parseRelayEvent('{"type":"source-connect-failed","migrationId":"m","index":0,"reason":"r"}'),
      {
        type: 'source-connect-failed',
        migrationId: 'm',
        index: 0,
        reason: 'r',
      },
    );
    assert.deepEqual(parseRelayEvent('{"type":"closed","bytesFromQemu":1,"bytesToQemu":2}'), {
      type: 'closed',
      bytesFromQemu: 1,
      bytesToQemu: 2,
    });
    assert.deepEqual(parseRelayEvent('{"type":"error","reason":"cannot use the private key"}'), {
      type: 'error',
      reason: 'cannot use the private key',
    });
  });

  it('ignores lines that are not one of its events, or lack the fields they claim', () => {
    for (const line of [
      '',
      'not json',
      '[]',
      'null',
      '{"type":"ready","pid":1}',
      '{"type":"ready","pid":-1,"port":1,"openssl":"x"}',
      '{"type":"tunnel-refused","status":"403","reason":"r","peerCommonName":"a","remoteAddress":"x"}',
      '{"type":"tunnel-connection-opened","role":"middle","migrationId":"m"}',
      '{"type":"tunnel-connection-closed","role":"source","migrationId":"m","bytesFromQemu":1.5,"bytesToQemu":0}',
      '{"type":"worker-exited","worker":0}',
    ]) {
      assert.equal(parseRelayEvent(line), undefined, line);
    }
  });

  it('counts connections and bytes from the events; the final totals count live connections too', () => {
    const stats = { connectionsOpened: 0, connectionsOpen: 0, bytesFromQemu: 0, bytesToQemu: 0 };
    countEvent(stats, { type: 'tunnel-connection-opened', role: 'source', migrationId: 'm', index: 0 });
    countEvent(stats, { type: 'tunnel-connection-opened', role: 'source', migrationId: 'm', index: 1 });
    countEvent(stats, {
      type: 'tunnel-connection-closed',
      role: 'source',
      migrationId: 'm',
      bytesFromQemu: 10,
      bytesToQemu: 2,
    });
    assert.deepEqual(stats, { connectionsOpened: 2, connectionsOpen: 1, bytesFromQemu: 10, bytesToQemu: 2 });
    countEvent(stats, { type: 'closed', bytesFromQemu: 25, bytesToQemu: 3 });
    assert.deepEqual(stats, { connectionsOpened: 2, connectionsOpen: 1, bytesFromQemu: 25, bytesToQemu: 3 });
  });

  it('says where to build it when it is missing', () => {
    const got = nativeRelayAvailability('/nonexistent/vmferry-relay');
    assert.deepEqual(got, {
      available: false,
      reason:
        '/nonexistent/vmferry-relay is not built (scripts/setup.mjs builds it with make -C native; it needs gcc and libssl-dev)',
    });
  });
});
