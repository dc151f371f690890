export {
  AgentMetrics,
  END_REASONS,
  endReason,
  transportLabel,
  type EndReason,
  type LiveMigration,
  type MetricsSources,
} from './agent-metrics.js';
export { parsePrometheusText, sampleValue, type PromFamily, type PromSample } from './prometheus-text.js';
