/** Table 11 of `npm run bench`: what parking costs, computed from the retry schedule and the prices (no measurement). */
import { loadConfig } from '../../lib/config/config';
import { DEFAULT_RETRY_SCHEDULE } from '../../lib/subscription/schema';
import {
  LANE_BATCH,
  LANE_BATCH_MS,
  LANE_MEMORY_GB,
  outageCost,
  PRICES,
  parkedEventOps,
  RETRY_PRICE_SOURCES,
  redeliveriesBeforePark,
} from './prices';
import { markdownTable } from './stats';

export const PARKING_RATE_PER_S = 1000;
export const PARKING_OUTAGE_S = 3600;

const n = (v: number) => Math.round(v).toLocaleString('en-US');
const usd = (v: number) => (v >= 0.1 ? `$${v.toFixed(2)}` : `$${v.toFixed(4)}`);
const millions = (v: number) => `${(v / 1e6).toFixed(2)} M`;

/** The function's defaults, as it reads them with no variable set. */
function defaults(): { parkAfterS: number; baseDelayS: number; maxDelayS: number } {
  const config = loadConfig({ ENDPOINTS: 'e=https://e.example.com/' });
  return { parkAfterS: config.parkAfterS, baseDelayS: config.retryBaseDelayS, maxDelayS: config.retryMaxDelayS };
}

function perEventRows(schedule: readonly number[]): string[][] {
  const { parkAfterS, baseDelayS, maxDelayS } = defaults();
  const policy = { baseDelayS, maxDelayS };
  const rows = Array.from({ length: schedule.length + 1 }, (_, i) => {
    const attempt = i + 1;
    const waited = schedule.slice(0, attempt).reduce((sum, s) => sum + s, 0);
    const label =
      attempt > schedule.length
        ? `retries exhausted after ${(waited / 3600).toFixed(1)} h: to the DLQ`
        : `delivered at lane attempt ${attempt} (${waited} s after parking)`;
    const ops = parkedEventOps(schedule, attempt);
    const requests = (ops.sends + ops.receives + ops.deletes) / LANE_BATCH;
    return [
      label,
      `${ops.sends} / ${ops.receives} / ${ops.deletes}`,
      requests.toFixed(1),
      usd(requests * 1e6 * PRICES.sqsRequest),
    ];
  });
  const most = redeliveriesBeforePark(parkAfterS, policy, () => 0);
  const fewest = redeliveriesBeforePark(parkAfterS, policy, () => 0.999);
  const range = fewest === most ? String(most) : `${fewest}–${most}`;
  const sourceRequests = (2 * most) / LANE_BATCH;
  rows.push([
    `before parking, breaker closed: source redeliveries until PARK_AFTER_S=${parkAfterS} (receive + ChangeMessageVisibility each)`,
    `— / ${range} receives / ${range} visibility changes`,
    `up to ${sourceRequests.toFixed(1)}`,
    usd(sourceRequests * 1e6 * PRICES.sqsRequest),
  ]);
  return rows;
}

function outageRows(schedule: readonly number[]): string[][] {
  const c = outageCost(schedule, PARKING_RATE_PER_S, PARKING_OUTAGE_S);
  const total = c.usd.sqs + c.usd.lambda;
  return [
    ['events parked (the breaker is open: at their first failure)', n(c.parked)],
    ['lane receives while it is down (hops and attempts)', millions(c.receivesDuring)],
    [
      'SQS messages sent / received / deleted until every one is delivered',
      `${millions(c.ops.sends)} / ${millions(c.ops.receives)} / ${millions(c.ops.deletes)}`,
    ],
    [
      `SQS requests, batches of ${LANE_BATCH} (one message per request)`,
      `${millions(c.requests)} (${millions(c.requestsUnbatched)})`,
    ],
    ['SQS', `${usd(c.usd.sqs)} (${usd(c.usd.sqsUnbatched)})`],
    [
      `Lambda: lane invocations · GB-s (${LANE_BATCH_MS} ms per batch at ${LANE_MEMORY_GB * 1024} MB, assumed)`,
      `${millions(c.invocations)} · ${n(c.gbSeconds)}`,
    ],
    ['Lambda (requests + duration)', usd(c.usd.lambda)],
    ['**total, lanes**', `**${usd(total)}** (${usd((total / c.parked) * 1e6)} per million parked events)`],
    ['events exhausted (to the DLQ)', n(c.exhausted)],
    ['last parked event delivered, after the recovery', `${n(c.drainS)} s (the wait it was in)`],
    [
      'EventBridge API destinations: retries',
      'not computable: billing of retried invocations and retry times not published (below)',
    ],
    [
      'Svix: retries',
      `$0 beyond the messages (${n(c.parked)} messages at $${PRICES.svixMessage}: ${usd(c.parked * PRICES.svixMessage)})`,
    ],
  ];
}

export function parkingSection(): string[] {
  const schedule = DEFAULT_RETRY_SCHEDULE;
  const { parkAfterS } = defaults();
  return [
    `### 11. Cost of parking (issue 16): SQS messages and requests per parked event, default retrySchedule [${schedule.join(', ')}] s, PARK_AFTER_S=${parkAfterS}`,
    '',
    markdownTable(
      [
        'parked event',
        'messages sent / received / deleted',
        `SQS requests (batches of ${LANE_BATCH})`,
        'SQS $ per million parked events',
      ],
      perEventRows(schedule),
    ),
    '',
    `One endpoint down for ${PARKING_OUTAGE_S / 3600} h at ${n(PARKING_RATE_PER_S)} events/s, each event delivered at its first lane attempt after the recovery:`,
    '',
    markdownTable(['item', 'value'], outageRows(schedule)),
    '',
    `Computed, not measured (test/bench/prices.ts): a lane message waits at most 900 s (SQS's longest timer), so a longer wait costs a hop (receive + send + delete) every 900 s; requests assume the mapping's batches of ${LANE_BATCH} and SendMessageBatch of ${LANE_BATCH} (at low volume batches are smaller: up to the unbatched figure). The park's send is made by the source invocation that delivered to the other endpoints. The source path's requests (receive + delete) are as in table 8 and not repeated. Retries by peers:`,
    ...RETRY_PRICE_SOURCES.map((source) => `- ${source}`),
  ];
}
