import type { Command } from 'commander';
import { AgentApi, AgentClient } from '../agent/index.js';
import { UsageError } from '../errors.js';
import { loadTlsIdentity, type TlsIdentity } from '../pki/index.js';
import type { CliIo } from './io.js';

export interface AgentConnectionFlags {
  agent?: string;
  tlsDir?: string;
}

/** Adds --agent and --tls-dir to a command that talks to an agent. */
export function withAgentOptions(command: Command): Command {
  return command
    .option(
      '--agent <address>',
      'agent to talk to: https://HOST:PORT or unix:/path/agent.sock (env VMFERRY_AGENT)',
    )
    .option('--tls-dir <dir>', 'your client identity: ca.pem, cert.pem, key.pem (env VMFERRY_TLS_DIR)');
}

/** The operator's certificate, from --tls-dir or VMFERRY_TLS_DIR. */
export async function operatorIdentity(io: CliIo, flags: { tlsDir?: string }): Promise<TlsIdentity> {
  const tlsDir = flags.tlsDir ?? io.env.VMFERRY_TLS_DIR;
  if (tlsDir === undefined) {
    throw new UsageError('no client certificate: pass --tls-dir DIR or set VMFERRY_TLS_DIR', {
      hint: 'issue one with: vmferry ca issue CA_DIR --name operator --role operator',
    });
  }
  return loadTlsIdentity(tlsDir);
}

/** The agent named by --agent, VMFERRY_AGENT, or the local agent's socket. */
export function agentAddress(io: CliIo, flags: { agent?: string }): string {
  return flags.agent ?? io.env.VMFERRY_AGENT ?? 'unix:/var/lib/vmferry/agent.sock';
}

/** The API of the agent named by the flags or the environment. */
export async function connectAgent(io: CliIo, flags: AgentConnectionFlags): Promise<AgentApi> {
  return new AgentApi(new AgentClient(agentAddress(io, flags), await operatorIdentity(io, flags)));
}

/** Runs `use` with the API of the agent named by the flags, and closes the connection afterwards. */
export async function withAgent<T>(
  io: CliIo,
  flags: AgentConnectionFlags,
  use: (agent: AgentApi) => Promise<T>,
): Promise<T> {
  const agent = await connectAgent(io, flags);
  try {
    return await use(agent);
  } finally {
    agent.close();
  }
}
