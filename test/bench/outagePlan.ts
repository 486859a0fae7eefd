/** What an outage run (outageRun.ts, a child process) is told and answers; shared with the bench's side. */
import type { DrainReport } from '../../infra/local/drain';

export const OUTAGE_ENDPOINTS = ['analytics', 'audit', 'search'] as const;
export const DOWN_ENDPOINT = 'audit';

export interface OutagePlan {
  label: string;
  lanes: boolean;
  /** Whether DOWN_ENDPOINT answers 5xx during the window; without, the window measures the usual pace. */
  outage: boolean;
  ratePerS: number;
  warmupS: number;
  /** The window: the outage, or the same seconds without one. */
  windowS: number;
  /** Seconds of sending after the window. */
  afterS: number;
  ceiling: number;
  parkAfterS: number;
  retrySchedule: number[];
  retryBaseDelayS: number;
  retryMaxDelayS: number;
  maxReceiveCount: number;
  concurrency: number;
  drainLimitS: number;
}

export interface OutageRun {
  plan: OutagePlan;
  sent: number;
  /** Per endpoint: distinct events it accepted during the window, and that per second. */
  window: { name: string; events: number; perSecond: number }[];
  windowLastedS: number;
  /** The largest in-flight count seen on each queue (by its mapping, before each receive); the DLQ by sampling. */
  queues: { queue: string; maxInFlight: number; ceilingHits: number }[];
  dlqMaxMessages: number;
  /** Seconds from the end of the window until DOWN_ENDPOINT had every event sent before it; null if never. */
  backlogDrainedS: number | null;
  /** Receives on DOWN_ENDPOINT's lane (parks + re-delay hops + the final delivery). */
  laneReceives: number;
  laneInvocations: number;
  parked: number;
  report: DrainReport;
  elapsedS: number;
}
