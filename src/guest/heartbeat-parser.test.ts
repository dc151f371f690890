import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GuestSerialParser, parseGuestLine, type GuestEvent } from './heartbeat-parser.js';

const READY = 'vmferry-guest ready mem=256 dirty=64 base=0x1000000 pages=65536';
const HB1 = 'vmferry-hb seq=1 written=16384 verified=150000 status=OK';
const HB2 = 'vmferry-hb seq=2 written=32768 verified=300000 status=OK';

function feed(chunks: readonly (string | Uint8Array)[]): { events: GuestEvent[]; parser: GuestSerialParser } {
  const parser = new GuestSerialParser();
  const events = chunks.flatMap((c) => parser.push(c));
  return { events, parser };
}

describe('parseGuestLine', () => {
  it('reads the ready line', () => {
    assert.deepEqual(parseGuestLine(READY), {
      kind: 'ready',
      memMiB: 256,
      dirtyMiBps: 64,
      base: 0x1000000,
      pages: 65536,
    });
  });

  it('reads OK and CORRUPT heartbeats', () => {
    assert.deepEqual(parseGuestLine(HB1), {
      kind: 'heartbeat',
      seq: 1,
      written: 16384,
      verified: 150000,
      status: 'ok',
    });
    assert.deepEqual(parseGuestLine('vmferry-hb seq=9 written=0 verified=77 status=CORRUPT page=12345'), {
      kind: 'heartbeat',
      seq: 9,
      written: 0,
      verified: 77,
      status: 'corrupt',
      corruptPage: 12345,
    });
  });

  it('reads other guest lines as messages with a topic', () => {
    assert.deepEqual(parseGuestLine('vmferry-guest warning: mem=4000 does not fit, clamped to mem=495'), {
      kind: 'message',
      topic: 'warning',
      text: 'vmferry-guest warning: mem=4000 does not fit, clamped to mem=495',
    });
    const e = parseGuestLine('vmferry-guest mismatch page=3 generation=0 word=25 expected=0x1 found=0x2');
    assert.equal(e?.kind === 'message' && e.topic, 'mismatch');
  });

  it('finds the marker after noise on the same line', () => {
    assert.equal(parseGuestLine(`\x1b[2J\x00garbage ${HB2}`)?.kind, 'heartbeat');
    const torn = parseGuestLine(`vmferry-hb seq=1 writ${HB2}`);
    assert.equal(torn?.kind === 'heartbeat' && torn.seq, 2);
  });

  it('ignores cut, malformed and foreign lines', () => {
    for (const line of [
      '',
      'SeaBIOS (version 1.16.2-debian-1.16.2-1)',
      'vmferry-hb seq=1 written=16384 verified=150000 sta',
      'vmferry-hb seq=1 written=16384 verified=150000 status=OKAY',
      'vmferry-hb seq=1 written=16384 verified=150000 status=CORRUPT',
      'vmferry-hb seq=x written=1 verified=1 status=OK',
      'vmferry-hb seq=99999999999999999999 written=1 verified=1 status=OK',
      'vmferry-guest ready mem=256 dirty=64 base=0xZZ pages=1',
    ]) {
      assert.equal(parseGuestLine(line), undefined, JSON.stringify(line));
    }
  });
});

describe("parseGuestLine: the Linux guest's heartbeat", () => {
  const LINUX_OK =
    'vmferry-hb seq=12 written=4096 verified=98304 status=OK mem=OK disk=OK disk_written=40 disk_verified=1200 net=OK';

  it('reads memory, disk and network status', () => {
    assert.deepEqual(parseGuestLine(LINUX_OK), {
      kind: 'heartbeat',
      seq: 12,
      written: 4096,
      verified: 98304,
      status: 'ok',
      mem: 'ok',
      disk: { status: 'ok', written: 40, verified: 1200 },
      net: 'ok',
    });
  });

  it('reads how many complete passes the disk check made over every block', () => {
    assert.deepEqual(
      parseGuestLine(
        'vmferry-hb seq=40 written=9 verified=99 status=OK mem=OK disk=OK disk_written=3 disk_verified=524288 disk_passes=2',
      ),
      {
        kind: 'heartbeat',
        seq: 40,
        written: 9,
        verified: 99,
        status: 'ok',
        mem: 'ok',
        disk: { status: 'ok', written: 3, verified: 524288, passes: 2 },
      },
    );
  });

  it('reads a heartbeat without disk or network (neither checked)', () => {
    assert.deepEqual(parseGuestLine('vmferry-hb seq=1 written=0 verified=5 status=OK mem=OK'), {
      kind: 'heartbeat',
      seq: 1,
      written: 0,
      verified: 5,
      status: 'ok',
      mem: 'ok',
    });
  });

  it('reads corrupt memory (page= where the freestanding guest puts it), corrupt disk, disk error, net down', () => {
    assert.deepEqual(
      parseGuestLine(
        'vmferry-hb seq=3 written=1 verified=2 status=CORRUPT page=77 mem=CORRUPT disk=OK disk_written=0 disk_verified=9',
      ),
      {
        kind: 'heartbeat',
        seq: 3,
        written: 1,
        verified: 2,
        status: 'corrupt',
        corruptPage: 77,
        mem: 'corrupt',
        disk: { status: 'ok', written: 0, verified: 9 },
      },
    );
    const disk = parseGuestLine(
      'vmferry-hb seq=4 written=1 verified=2 status=CORRUPT mem=OK disk=CORRUPT block=17 disk_written=3 disk_verified=9 net=DOWN',
    );
    assert.deepEqual(disk, {
      kind: 'heartbeat',
      seq: 4,
      written: 1,
      verified: 2,
      status: 'corrupt',
      mem: 'ok',
      disk: { status: 'corrupt', written: 3, verified: 9, corruptBlock: 17 },
      net: 'down',
    });
    const error = parseGuestLine(
      'vmferry-hb seq=5 written=1 verified=2 status=OK mem=OK disk=ERROR disk_written=3 disk_verified=9',
    );
    assert.equal(error?.kind === 'heartbeat' && error.disk?.status, 'error');
    assert.equal(error?.kind === 'heartbeat' && error.status, 'ok');
  });

  it('takes the fields in any order and skips unknown ones', () => {
    const e = parseGuestLine(
      'vmferry-hb seq=2 written=0 verified=7 status=OK net=OK rtt_us=420 disk_verified=5 disk_written=1 disk=OK mem=OK',
    );
    assert.deepEqual(e?.kind === 'heartbeat' && [e.net, e.disk, e.mem], [
      'ok',
      { status: 'ok', written: 1, verified: 5 },
      'ok',
    ]);
  });

  it('finds the marker after noise, and the second of two torn heartbeats', () => {
    assert.equal(parseGuestLine(`\x1b[2J${LINUX_OK}`)?.kind, 'heartbeat');
    const torn = parseGuestLine(`vmferry-hb seq=11 written=1 verified=2 status=OK mem=OK disk=O${LINUX_OK}`);
    assert.equal(torn?.kind === 'heartbeat' && torn.seq, 12);
  });

  it('refuses lines whose fields are missing, malformed or contradict each other', () => {
    for (const line of [
      // status says OK, a part says CORRUPT (or the other way round)
      'vmferry-hb seq=1 written=0 verified=1 status=OK page=3 mem=CORRUPT',
      'vmferry-hb seq=1 written=0 verified=1 status=CORRUPT mem=OK disk=OK disk_written=0 disk_verified=1',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK disk=CORRUPT block=2 disk_written=0 disk_verified=1',
      // the corrupt page or block, or a disk counter, missing
      'vmferry-hb seq=1 written=0 verified=1 status=CORRUPT mem=CORRUPT',
      'vmferry-hb seq=1 written=0 verified=1 status=CORRUPT mem=OK disk=CORRUPT disk_written=0 disk_verified=1',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK disk=OK disk_verified=1',
      // unknown values, a field twice, a line cut inside the fields, trailing words
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=FINE',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK net=UP',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK disk=BAD disk_written=0 disk_verified=1',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK mem=OK',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK disk=OK disk_written=0 disk_verified=x',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK disk=OK disk_written=0 disk_verified=1 disk_passes=x',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK disk=OK disk_written=0 disk_verified=99999999999999999999',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK net=O',
      'vmferry-hb seq=1 written=0 verified=1 status=OK mem=OK net=OK and more',
    ]) {
      assert.equal(parseGuestLine(line), undefined, line);
    }
  });

  it("leaves the freestanding guest's lines as they were (no per-part fields)", () => {
    const old = parseGuestLine(`${HB1} trailing words`);
    assert.deepEqual(old, { kind: 'heartbeat', seq: 1, written: 16384, verified: 150000, status: 'ok' });
    assert.equal(
      parseGuestLine('vmferry-hb seq=9 written=0 verified=77 status=CORRUPT page=12345 x=1')?.kind,
      'heartbeat',
    );
  });
});

describe('GuestSerialParser', () => {
  it('joins lines split across chunks, at any byte', () => {
    const text = `${READY}\n${HB1}\n${HB2}\n`;
    for (let cut = 0; cut <= text.length; cut++) {
      const { events } = feed([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(
        events.map((e) => e.kind),
        ['ready', 'heartbeat', 'heartbeat'],
        `cut at ${cut}`,
      );
    }
  });

  it('returns every line of a chunk, in order, from bytes or strings', () => {
    const { events } = feed([
      Buffer.from(`${HB1}\r\n${HB2}\r\nvmferry-hb seq=3 written=1 verified=400000 status=OK\r\n`),
    ]);
    assert.deepEqual(
      events.map((e) => (e.kind === 'heartbeat' ? e.seq : -1)),
      [1, 2, 3],
    );
  });

  it('handles a CRLF split between chunks', () => {
    const { events } = feed([`${HB1}\r`, `\n${HB2}\r`, '\n']);
    assert.equal(events.length, 2);
  });

  it('counts and skips garbage, keeps going after it', () => {
    const noise = Buffer.from([0xff, 0xfe, 0x00, 0x1b, 0x5b, 0x41, 0x0a, 0xc3]);
    const { events, parser } = feed([
      noise,
      'more noise\n',
      `${HB1}\n`,
      'vmferry-hb seq=2 wri\n',
      `${HB2}\n`,
    ]);
    assert.deepEqual(
      events.map((e) => (e.kind === 'heartbeat' ? e.seq : -1)),
      [1, 2],
    );
    assert.equal(parser.ignoredLines, 3);
  });

  it('does not parse a last line that never got its newline', () => {
    const { events } = feed([`${HB1}\n`, 'vmferry-hb seq=2 written=1 verified=2 status=CORRUPT page=12']);
    assert.equal(events.length, 1);
  });

  it('drops an endless line without growing, then resumes', () => {
    const parser = new GuestSerialParser();
    for (let i = 0; i < 100; i++) assert.deepEqual(parser.push('x'.repeat(1000)), []);
    assert.deepEqual(parser.push(`${HB1}\n`), []);
    const events = parser.push(`${HB2}\n`);
    assert.equal(events.length, 1);
    assert.equal(parser.ignoredLines, 1);
  });

  it('reports CORRUPT with the page', () => {
    const { events } = feed([`${HB1}\nvmferry-hb seq=2 written=5 verified=9 status=CORRUPT page=42\n`]);
    const last = events.at(-1);
    assert.ok(last?.kind === 'heartbeat');
    assert.equal(last.status, 'corrupt');
    assert.equal(last.corruptPage, 42);
  });
});
