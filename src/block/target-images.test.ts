import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConflictError } from '../errors.js';
import type { DiskPlan } from '../policy/index.js';
import type { DiskSpec } from '../qemu/index.js';
import {
  createTargetImages,
  leftoverFiles,
  removeLeftovers,
  stagingPath,
  type CreatedFile,
} from './target-images.js';

const root = mkdtempSync(join(tmpdir(), 'vmf-target-images-'));
after(() => rmSync(root, { recursive: true, force: true }));

const ID = 'm-0123456789';
const disk: DiskSpec = { path: 'web-1/disk.qcow2', format: 'qcow2', storage: 'local' };
const plan: DiskPlan = {
  disk: 0,
  action: 'copy',
  sync: 'full',
  format: 'qcow2',
  virtualSize: 1 << 20,
  reason: 'local',
};

/** The journal's side: every call in order, with what was on disk at that moment. */
function ledger(): {
  calls: string[];
  files: CreatedFile[];
  creating: (path: string, kind: CreatedFile['kind']) => void;
  created: (path: string) => void;
} {
  const files: CreatedFile[] = [];
  const calls: string[] = [];
  return {
    calls,
    files,
    creating: (path, kind) => {
      calls.push(`creating ${path} (${existsSync(path) ? 'exists' : 'absent'})`);
      files.push({ path, kind, state: 'creating' });
    },
    created: (path) => {
      calls.push(`created ${path} (${existsSync(path) ? 'exists' : 'absent'})`);
      const f = files.find((x) => x.path === path);
      if (f !== undefined) f.state = 'created';
    },
  };
}

/** Stands in for qemu-img create: writes a recognisable image at the path it is given (the last but one argument). */
const fakeQemuImg = (args: readonly string[]): Promise<string> => {
  writeFileSync(args[args.length - 2] as string, 'new qcow2 image');
  return Promise.resolve('');
};

describe("the destination's new images, journaled before each is made", () => {
  it('journals each folder and the image before making it and again once made; the image comes from its staging name', async () => {
    const instances = join(root, 'a');
    mkdirSync(instances);
    const l = ledger();
    const made = await createTargetImages({
      migrationId: ID,
      disks: [disk],
      plans: [plan],
      instancesPath: instances,
      sourceInstancesPath: undefined,
      ledger: l,
      run: fakeQemuImg,
    });
    const image = join(instances, 'web-1', 'disk.qcow2');
    assert.deepEqual(made.files, [image]);
    assert.deepEqual(l.calls, [
      `creating ${join(instances, 'web-1')} (absent)`,
      `created ${join(instances, 'web-1')} (exists)`,
      `creating ${image} (absent)`,
      `created ${image} (exists)`,
    ]);
    assert.equal(readFileSync(image, 'utf8'), 'new qcow2 image');
    assert.ok(!existsSync(stagingPath(image, ID)), 'the staging name is gone');

    // Everything it journaled goes again, folder included.
    const { removed, problems } = await removeLeftovers(l.files, ID);
    assert.deepEqual(problems, []);
    assert.deepEqual(removed, [image, join(instances, 'web-1')]);
    assert.ok(!existsSync(join(instances, 'web-1')));
  });

  it('never overwrites a file at the path, nor lets its removal take that file', async () => {
    const instances = join(root, 'b');
    mkdirSync(join(instances, 'web-1'), { recursive: true });
    const image = join(instances, 'web-1', 'disk.qcow2');
    writeFileSync(image, 'somebody else');
    const l = ledger();
    await assert.rejects(
      createTargetImages({
        migrationId: ID,
        disks: [disk],
        plans: [plan],
        instancesPath: instances,
        sourceInstancesPath: undefined,
        ledger: l,
        run: fakeQemuImg,
      }),
      (err: unknown) => err instanceof ConflictError && err.message === `disk image ${image} already exists`,
    );
    assert.deepEqual(l.calls, [], 'nothing made, nothing journaled (the folder was there)');
    // Even journaled as being created (a file that appeared between the journal and the link), it stays.
    const { removed } = await removeLeftovers([{ path: image, kind: 'image', state: 'creating' }], ID);
    assert.deepEqual(removed, []);
    assert.equal(readFileSync(image, 'utf8'), 'somebody else');
  });

  it('after a restart at each step, removes exactly what this migration made', async () => {
    const dir = join(root, 'c');
    mkdirSync(dir);
    const image = join(dir, 'disk.qcow2');
    const staging = stagingPath(image, ID);
    const journaled: CreatedFile[] = [{ path: image, kind: 'image', state: 'creating' }];

    // Restart while qemu-img wrote the staging file: it goes.
    writeFileSync(staging, 'half');
    assert.deepEqual((await removeLeftovers(journaled, ID)).removed, [staging]);

    // Restart between the link and the journal: the image is the staging file's inode, both go.
    writeFileSync(staging, 'whole');
    linkSync(staging, image);
    assert.deepEqual((await removeLeftovers(journaled, ID)).removed, [staging, image]);

    // Journaled as created: it goes, with or without the staging name.
    writeFileSync(image, 'whole');
    assert.deepEqual((await removeLeftovers([{ ...journaled[0]!, state: 'created' }], ID)).removed, [image]);
    assert.deepEqual(
      (await removeLeftovers(journaled, ID)).removed,
      [],
      'nothing is left: nothing to remove',
    );
  });
});

describe('what a migration left (pure)', () => {
  const img = '/i/web-1/disk.qcow2';
  const stg = stagingPath(img, ID);

  it('names the staging file after the image and the migration', () => {
    assert.equal(stg, `/i/web-1/.disk.qcow2.vmferry-${ID}`);
  });

  it('removes a created image, and one journaled as being created only when it is its staging file', () => {
    const creating: CreatedFile = { path: img, kind: 'image', state: 'creating' };
    const created: CreatedFile = { path: img, kind: 'image', state: 'created' };
    const disk = (entries: [string, string][]): Map<string, string> => new Map(entries);
    assert.deepEqual(leftoverFiles([created], disk([[img, '1:7']]), ID).files, [img]);
    assert.deepEqual(leftoverFiles([created], disk([]), ID).files, []);
    assert.deepEqual(leftoverFiles([creating], disk([[img, '1:7']]), ID).files, []);
    assert.deepEqual(leftoverFiles([creating], disk([[stg, '1:8']]), ID).files, [stg]);
    assert.deepEqual(
      leftoverFiles(
        [creating],
        disk([
          [img, '1:8'],
          [stg, '1:8'],
        ]),
        ID,
      ).files,
      [stg, img],
    );
    assert.deepEqual(
      leftoverFiles(
        [creating],
        disk([
          [img, '1:7'],
          [stg, '1:8'],
        ]),
        ID,
      ).files,
      [stg],
    );
  });

  it('removes the folders it made, innermost first, never one it only meant to make', () => {
    const files: CreatedFile[] = [
      { path: '/i/a', kind: 'folder', state: 'created' },
      { path: '/i/a/b', kind: 'folder', state: 'created' },
      { path: '/i/a/b/c', kind: 'folder', state: 'creating' },
    ];
    const onDisk = new Map([
      ['/i/a', '1:1'],
      ['/i/a/b', '1:2'],
      ['/i/a/b/c', '1:3'],
    ]);
    assert.deepEqual(leftoverFiles(files, onDisk, ID), { files: [], folders: ['/i/a/b', '/i/a'] });
  });
});
