export {
  LOG_LEVELS,
  createAgentLogger,
  logFunction,
  type AgentLoggerOptions,
  type LogFields,
  type LogFn,
  type LogLevel,
} from './logger.js';
