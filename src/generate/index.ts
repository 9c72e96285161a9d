/** Deterministic scenario generator: realistic agent-platform telemetry with injected incidents. */
export { EXPECTED_ANOMALY, INCIDENT_TYPES, DEFAULT_OFFSETS_MS, parseIncidentList, parseOffset, type IncidentSpec, type IncidentType } from './incidents.js';
export { EFFECT_DELAY_MS, offsetPlacing, type ScenarioOptions } from './plan.js';
export { generatedSeries, generateRecords } from './generator.js';
export { scenarioTruth, type IncidentTruth, type RootCauseKind, type ScenarioTruth, type TruthEvent } from './truth.js';
export { loadScenario, recordToJsonLine, truthPathFor, writeScenario } from './write.js';
export {
  AGENTS,
  COMPONENTS,
  DEFAULT_STEP_MS,
  MCP_SERVERS,
  POLICY,
  TOOLS,
  WORKER,
  WORKER_MEMORY_LIMIT_BYTES,
} from './topology.js';
