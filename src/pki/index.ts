/**
 * vmferry's PKI: a private CA that issues the certificates agents and
 * operators use for mutual TLS, and the glue to Node TLS and QEMU.
 *
 * Files (all PEM; keys ECDSA P-256 PKCS#8, mode 0600):
 *
 *     CA_DIR/ca.pem                    CA certificate (share it)
 *     CA_DIR/ca-key.pem                CA key (keep it off the hosts)
 *     CA_DIR/issued/NAME/ca.pem        copy of the CA certificate
 *     CA_DIR/issued/NAME/cert.pem      certificate, OU=ROLE CN=NAME
 *     CA_DIR/issued/NAME/key.pem       its key
 *     CA_DIR/crl.pem                   revocation list (`ca revoke`), also copied as
 *     CA_DIR/issued/NAME/crl.pem       into each identity; agents refuse revoked peers
 *     CA_DIR/revoked.json              what was revoked, from which each CRL is made
 *
 * An issued directory (or any `--out` directory) is a TLS identity: copy it
 * to the host and point the agent (or CLI) at it; {@link loadTlsIdentity}
 * reads it.
 */
export { CA_FILES, DEFAULT_CA_DAYS, caPaths, initCa, loadCa } from './ca.js';
export type { CaPaths, InitCaOptions, LoadedCa } from './ca.js';
export { certificateInfo, commonNameOf, parseCertificate } from './certificate-info.js';
export type { CertificateInfo } from './certificate-info.js';
export { IDENTITY_FILES, checkTlsIdentity, loadTlsIdentity } from './identity.js';
export type { TlsIdentity } from './identity.js';
export { DEFAULT_LEAF_DAYS, ISSUED_DIR, issueCertificate, issuedIdentityDir } from './issue.js';
export { revokeCertificate } from './revoke.js';
export type { RevokeOptions, RevokeResult, RevokedCertificate } from './revoke.js';
export type { IssueOptions, IssuedIdentity } from './issue.js';
export { validateCertName, validateDays, validateDnsName, validateIpAddress } from './names.js';
export { createOpensslRunner, runOpenssl } from './openssl.js';
export type { OpensslRunner } from './openssl.js';
export { peerIdentity } from './peer.js';
export { ROLES, ROLE_HELP, isRole, noRoleError, roleOf, validateRole } from './roles.js';
export type { Role } from './roles.js';
export type { PeerIdentity } from './peer.js';
export {
  QEMU_TLS_FILES,
  qemuAuthzListObject,
  qemuPeerNames,
  qemuTlsCredsArg,
  qemuTlsCredsObject,
  writeQemuTlsCredsDir,
} from './qemu-tls-creds.js';
export type { QemuTlsCredsDir, QemuTlsFile } from './qemu-tls-creds.js';
export { mtlsClientOptions, mtlsServerOptions } from './tls-options.js';
export type { MtlsClientOptions, MtlsServerOptions } from './tls-options.js';
export { createTestPki, type TestPki } from './test-pki.js';
