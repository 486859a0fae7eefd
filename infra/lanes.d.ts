// Types of the exports of infra/lanes.js that tests import.
export const LANE_QUEUE_NAME_LIMIT: number;
export const DEFAULT_RETRY_SCHEDULE_S: number[];
export const LANE_RETENTION_MARGIN_S: number;
export const LANE_MIN_CONCURRENCY: number;
export const LANE_BATCH_SIZE: number;
export const LANE_HOP_S: number;
export const IN_FLIGHT_ALARM_COUNT: number;
export function lanePrefix(service: string, stage: string): string;
export function laneQueueUrlPrefix(service: string, stage: string): { 'Fn::Sub': string };
/** The endpoint's retry schedule from the endpoints file (plain parsed YAML), or the default. */
export function retryScheduleOf(document: unknown, endpointName: string): number[];
/** Why the stage's lanes would not work, one message per problem (none: they fit). */
export function laneProblems(stage: {
  service: string;
  stage: string;
  endpoints: readonly { name: string }[];
  document: unknown;
  parkAfterS: number;
  laneRetentionS: number;
  deadLetteredAfterS: number;
}): string[];
/** The lanes' queues, mappings and IAM policy of a stage with `lanes` (none without). */
export function laneResources(
  stage: {
    lanes: boolean;
    service: string;
    stage: string;
    timeoutS: number;
    windowS: number;
    laneRetentionS: number;
    endpoints: readonly { name: string; id: string; laneConcurrency: number }[];
  },
  dependsOn?: string[],
): Record<string, { Type: string; Properties: Record<string, unknown> }>;
/** A lane's MaximumConcurrency from the stage's and what the endpoint's global budget takes (undefined: none). */
export function laneConcurrency(maximumConcurrency: number, budgetInstances: number | undefined): number;
