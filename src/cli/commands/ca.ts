import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import {
  DEFAULT_CA_DAYS,
  DEFAULT_LEAF_DAYS,
  initCa,
  ROLES,
  ROLE_HELP,
  issueCertificate,
  revokeCertificate,
  type Role,
} from '../../pki/index.js';
import { oneOf, repeated, wholeNumber } from '../arg-parsers.js';
import { type CliIo, printJson, printLines } from '../io.js';
import type { CommandModule } from '../command.js';

interface InitFlags {
  days?: number;
  json?: boolean;
}

interface IssueFlags {
  name: string;
  role: Role;
  ip?: string[];
  dns?: string[];
  out?: string;
  days?: number;
  force?: boolean;
  json?: boolean;
}

async function runInit(io: CliIo, dir: string, flags: InitFlags): Promise<void> {
  const ca = await initCa(dir, { days: flags.days ?? DEFAULT_CA_DAYS });
  if (flags.json === true) {
    printJson(io, { dir: ca.dir, cert: ca.certPath, key: ca.keyPath });
    return;
  }
  printLines(io, [
    `created CA in ${ca.dir}`,
    `  certificate  ${ca.certPath}`,
    `  key          ${ca.keyPath} (private: keep it off the hypervisor hosts)`,
  ]);
}

async function runIssue(io: CliIo, dir: string, flags: IssueFlags): Promise<void> {
  const issued = await issueCertificate(dir, {
    name: flags.name,
    role: flags.role,
    ips: flags.ip ?? [],
    dnsNames: flags.dns ?? [],
    outDir: flags.out,
    days: flags.days ?? DEFAULT_LEAF_DAYS,
    force: flags.force === true,
  });
  if (flags.json === true) {
    printJson(io, {
      name: issued.name,
      role: issued.role,
      dir: issued.dir,
      cert: issued.certPath,
      key: issued.keyPath,
      ca: issued.caPath,
      dnsNames: issued.dnsNames,
      ips: issued.ips,
      serialNumber: issued.serialNumber,
      notAfter: issued.notAfter.toISOString(),
    });
    return;
  }
  const sans = [...issued.dnsNames.map((d) => `DNS:${d}`), ...issued.ips.map((a) => `IP:${a}`)];
  printLines(io, [
    `issued ${issued.role} certificate for ${issued.name} in ${issued.dir}`,
    `  certificate  ${issued.certPath}`,
    `  key          ${issued.keyPath}`,
    `  CA           ${issued.caPath}`,
    `  names        ${sans.join(', ')}`,
    `  expires      ${issued.notAfter.toISOString()}`,
  ]);
}

interface RevokeFlags {
  name?: string;
  cert?: string;
  json?: boolean;
}

async function runRevoke(io: CliIo, dir: string, flags: RevokeFlags): Promise<void> {
  if ((flags.name === undefined) === (flags.cert === undefined))
    throw new UsageError('give exactly one of --name NAME or --cert FILE');
  const r = await revokeCertificate(dir, {
    ...(flags.name !== undefined ? { name: flags.name } : {}),
    ...(flags.cert !== undefined ? { certPath: flags.cert } : {}),
  });
  if (flags.json === true) {
    printJson(io, r);
    return;
  }
  printLines(io, [
    `${r.newlyRevoked ? 'revoked' : 'already revoked'}: ${r.subject} (serial ${r.serial})`,
    `  CRL          ${r.crlPath} (${r.revokedCount} revoked in all)`,
    ...r.copiedTo.map((d) => `  copied to    ${d}`),
    'copy crl.pem into the TLS directory of every host and operator, then send each agent SIGHUP',
    '(it reloads its TLS directory; a restart works too and leaves running VMs alone)',
  ]);
}

/** `vmferry ca init|issue|revoke`: the deployment's private certificate authority. */
export const caCommand: CommandModule = {
  name: 'ca',
  register(program: Command, io: CliIo): void {
    const ca = program
      .command('ca')
      .description('manage the private CA whose certificates agents and operators use for mutual TLS');

    ca.command('init')
      .description('create a CA in DIR: ca.pem (certificate) and ca-key.pem (ECDSA P-256 key, mode 0600)')
      .argument('<dir>', 'directory for the CA (created if missing; an existing CA is never overwritten)')
      .option('--days <n>', `validity in days (default ${DEFAULT_CA_DAYS})`, wholeNumber('--days'))
      .option('--json', 'print the paths as JSON')
      .action(async (dir: string, flags: InitFlags) => runInit(io, dir, flags));

    ca.command('issue')
      .description(
        'issue a certificate for a host agent or an operator, signed by the CA in DIR; writes cert.pem, ' +
          'key.pem (0600) and ca.pem to DIR/issued/NAME (or --out), a directory agents and the CLI load as their TLS identity',
      )
      .argument('<dir>', 'the CA directory (from ca init)')
      .requiredOption('--name <name>', 'host or operator name: the CN and first DNS name (e.g. host-a)')
      .requiredOption(
        '--role <role>',
        `what it may do (its subject OU): ${ROLES.map((r) => `${r} = ${ROLE_HELP[r]}`).join('; ')}`,
        oneOf('--role', ROLES),
      )
      .option('--ip <addr>', 'IP address subjectAltName (repeatable)', repeated(String))
      .option('--dns <name>', 'extra DNS name subjectAltName (repeatable)', repeated(String))
      .option('--out <dir>', 'write the three files here instead of DIR/issued/NAME')
      .option('--days <n>', `validity in days (default ${DEFAULT_LEAF_DAYS})`, wholeNumber('--days'))
      .option('--force', 'replace a certificate already issued in that directory')
      .option('--json', 'print the paths and names as JSON')
      .action(async (dir: string, flags: IssueFlags) => runIssue(io, dir, flags));

    ca.command('revoke')
      .description(
        'revoke a certificate the CA in DIR issued: DIR/crl.pem is made anew (and copied into every ' +
          'DIR/issued/* directory); agents that load it refuse that certificate as client and as server',
      )
      .argument('<dir>', 'the CA directory (from ca init)')
      .option('--name <name>', 'the certificate issued under this name (DIR/issued/NAME/cert.pem)')
      .option('--cert <file>', 'the certificate in this file')
      .option('--json', 'print the result as JSON')
      .action(async (dir: string, flags: RevokeFlags) => runRevoke(io, dir, flags));
  },
};
