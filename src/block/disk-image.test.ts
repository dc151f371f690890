import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConflictError, DiskImageError } from '../errors.js';
import {
  createImage,
  identityMismatch,
  parseImageInfo,
  qemuImgCreateArgs,
  type ImageIdentity,
} from './disk-image.js';

const dir = mkdtempSync(join(tmpdir(), 'vmf-disk-image-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('qemu-img create arguments', () => {
  it('creates raw and qcow2 images of the virtual size, a qcow2 top on its backing image', () => {
    assert.deepEqual(qemuImgCreateArgs({ path: '/i/a.raw', format: 'raw', virtualSize: 1 << 30 }), [
      'create',
      '-q',
      '-f',
      'raw',
      '/i/a.raw',
      '1073741824',
    ]);
    assert.deepEqual(
      qemuImgCreateArgs({
        path: '/i/web/disk.qcow2',
        format: 'qcow2',
        virtualSize: 4096,
        backing: { name: '../_base/base.qcow2', format: 'qcow2' },
      }),
      [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-b',
        '../_base/base.qcow2',
        '-F',
        'qcow2',
        '/i/web/disk.qcow2',
        '4096',
      ],
    );
  });

  it('refuses a size that is not a whole number of bytes, and a raw image with a backing image', () => {
    assert.throws(
      () => qemuImgCreateArgs({ path: '/a', format: 'raw', virtualSize: 0 }),
      /virtualSize must be a whole number of bytes > 0, got 0/,
    );
    assert.throws(
      () =>
        qemuImgCreateArgs({
          path: '/a',
          format: 'raw',
          virtualSize: 512,
          backing: { name: 'b', format: 'raw' },
        }),
      /a raw image cannot have a backing image/,
    );
  });
});

describe('createImage', () => {
  it('never overwrites a file: ConflictError naming it, the file untouched, qemu-img not run', async () => {
    const path = join(dir, 'exists.qcow2');
    writeFileSync(path, 'precious');
    let ran = false;
    await assert.rejects(
      createImage({ path, format: 'qcow2', virtualSize: 1 << 20 }, () => {
        ran = true;
        return Promise.resolve('');
      }),
      (err: unknown) =>
        err instanceof ConflictError && err.code === 'VMF_ERR_CONFLICT' && err.message.includes(path),
    );
    assert.equal(ran, false);
  });

  it('leaves no file behind when qemu-img fails', async () => {
    const path = join(dir, 'fails.qcow2');
    const failure = new DiskImageError('qemu-img create failed: no space');
    await assert.rejects(
      createImage({ path, format: 'qcow2', virtualSize: 1 << 20 }, (args) => {
        assert.equal(args.at(-2), path);
        return Promise.reject(failure);
      }),
      (err: unknown) => err === failure,
    );
    assert.ok(!readdirSync(dir).includes('fails.qcow2'));
  });
});

describe('qemu-img info', () => {
  it('reads format, sizes and the backing image', () => {
    const info = parseImageInfo(
      JSON.stringify({
        'virtual-size': 1073741824,
        filename: '/i/web/disk.qcow2',
        format: 'qcow2',
        'actual-size': 200704,
        'backing-filename': '../_base/base.qcow2',
        'full-backing-filename': '/i/_base/base.qcow2',
        'backing-filename-format': 'qcow2',
      }),
      '/i/web/disk.qcow2',
    );
    assert.deepEqual(info, {
      format: 'qcow2',
      virtualSize: 1073741824,
      actualSize: 200704,
      backing: { name: '../_base/base.qcow2', path: '/i/_base/base.qcow2', format: 'qcow2' },
    });
    assert.equal(
      parseImageInfo('{"virtual-size": 512, "format": "raw"}', '/a').backing,
      undefined,
      'no backing image',
    );
  });

  it('names the image when qemu-img printed something else', () => {
    assert.throws(
      () => parseImageInfo('qemu-img: Could not open', '/i/x.qcow2'),
      (err: unknown) =>
        err instanceof DiskImageError &&
        /qemu-img info of \/i\/x\.qcow2 did not print JSON/.test(err.message),
    );
    assert.throws(() => parseImageInfo('{"format": "raw"}', '/i/y'), /gave no format or virtual size/);
  });
});

describe('image identity', () => {
  it('says what differs between two identities', () => {
    const id: ImageIdentity = {
      path: '/i/base.qcow2',
      format: 'qcow2',
      virtualSize: 1024,
      sizeBytes: 196608,
      fingerprint: 'aa',
    };
    assert.equal(identityMismatch(id, { ...id, path: '/j/base.qcow2' }), undefined);
    assert.equal(identityMismatch(id, { ...id, format: 'raw' }), 'format raw, not qcow2');
    assert.equal(identityMismatch(id, { ...id, virtualSize: 2048 }), 'virtual size 2048, not 1024 bytes');
    assert.equal(identityMismatch(id, { ...id, sizeBytes: 1 }), 'file size 1, not 196608 bytes');
    assert.equal(
      identityMismatch(id, { ...id, fingerprint: 'bb' }),
      'different content in its first or last MiB',
    );
  });
});
