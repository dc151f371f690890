import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import {
  defaultMachineType,
  machineFamily,
  machineTypesFromQmp,
  resolveMachineType,
} from './machine-types.js';

/** A slice of QEMU 7.2's query-machines answer. */
const qemu72 = machineTypesFromQmp([
  { name: 'pc-i440fx-2.9' },
  { name: 'pc-i440fx-7.2', alias: 'pc', 'is-default': true },
  { name: 'pc-i440fx-2.12' },
  { name: 'pc-i440fx-7.1' },
  { name: 'pc-q35-7.2', alias: 'q35' },
  { name: 'pc-q35-6.2' },
  { name: 'microvm' },
  { name: 'isapc' },
  { name: 'none' },
]);

describe('machine types', () => {
  it('defaults to the newest versioned i440fx, comparing versions as numbers', () => {
    assert.equal(defaultMachineType(qemu72), 'pc-i440fx-7.2');
    assert.equal(
      defaultMachineType(machineTypesFromQmp([{ name: 'pc-i440fx-2.9' }, { name: 'pc-i440fx-2.12' }])),
      'pc-i440fx-2.12',
    );
  });

  it("follows QEMU's default family to q35, and falls back to the other family", () => {
    const q35Default = machineTypesFromQmp([
      { name: 'pc-i440fx-8.0' },
      { name: 'pc-q35-8.0', alias: 'q35', 'is-default': true },
      { name: 'pc-q35-7.2' },
    ]);
    assert.equal(defaultMachineType(q35Default), 'pc-q35-8.0');
    assert.equal(defaultMachineType(machineTypesFromQmp([{ name: 'pc-q35-7.1' }])), 'pc-q35-7.1');
    assert.equal(defaultMachineType(machineTypesFromQmp([{ name: 'microvm' }])), undefined);
  });

  it('stores the versioned type an alias stands for, and keeps a versioned type asked for', () => {
    assert.equal(resolveMachineType('web-1', undefined, qemu72), 'pc-i440fx-7.2');
    assert.equal(resolveMachineType('web-1', 'q35', qemu72), 'pc-q35-7.2');
    assert.equal(resolveMachineType('web-1', 'pc', qemu72), 'pc-i440fx-7.2');
    assert.equal(resolveMachineType('web-1', 'pc-q35-6.2', qemu72), 'pc-q35-6.2');
  });

  it('refuses a machine this QEMU lacks or one that is not a PC, naming it', () => {
    const refused = (requested: string, message: RegExp): void =>
      assert.throws(
        () => resolveMachineType('web-1', requested, qemu72),
        (err: unknown) =>
          err instanceof UsageError && message.test(err.message) && /pc-i440fx-7\.2/.test(err.hint ?? ''),
      );
    refused('pc-i440fx-9.0', /VM web-1: machine "pc-i440fx-9\.0" is not offered by this host's QEMU/);
    refused('microvm', /VM web-1: machine "microvm" is not a PC machine type/);
  });

  it('knows the family of a machine type, its aliases included', () => {
    assert.deepEqual(
      ['pc', 'q35', 'pc-i440fx-7.2', 'pc-q35-7.2', 'microvm', 'pc-i440fx-rhel7.5.0'].map(machineFamily),
      ['i440fx', 'q35', 'i440fx', 'q35', undefined, undefined],
    );
  });
});
