/** The directive that acts on the most likely root cause, in the vocabulary of src/remedies.ts. */
import { healLatencySpike, respondToFlakyConnection, respondToMemoryLeak, type SuggestedAction } from '../remedies.js';
import { MOVED_Z } from './strength.js';
import type { Candidate, Symptom } from './types.js';

type CandidateSignal = Candidate['evidence']['signals'][number];

/** A memory series that rose clearly above its baseline. */
export function grownMemory(signals: readonly CandidateSignal[]): CandidateSignal | undefined {
  return signals.find((s) => s.kind === 'metric' && /memory/.test(s.name) && s.z !== null && s.z >= MOVED_Z);
}

export function remedyForCause(symptom: Symptom, top: Candidate | undefined, isMcpServer: (component: string) => boolean): SuggestedAction | null {
  if (!top) return null;
  const signals = top.evidence.signals;
  // the analysed anomaly is resolved by the directive only when it is the one the directive heals
  const analysed = (type: string) =>
    symptom.anomaly_id !== null && symptom.anomaly_type === type && symptom.component === top.component ? symptom.anomaly_id : null;
  if (signals.some((s) => s.kind === 'connection')) {
    return respondToFlakyConnection(top.component, `${top.component}, the most likely cause, keeps disconnecting`);
  }
  if (signals.some((s) => s.kind === 'latency') && isMcpServer(top.component)) {
    return healLatencySpike(top.component, analysed('latency_spike'), `${top.component}, the most likely cause, is slower`);
  }
  if (grownMemory(signals)) {
    return respondToMemoryLeak(top.component, analysed('memory_leak'), `${top.component}, the most likely cause, grew in memory`);
  }
  return null;
}
