// npm run endpoint -- pause|resume|status <name> (--stage S [--region R] | --local): one endpoint's lane by hand.
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { describePermissions, ENDPOINT_CLI_PERMISSIONS } from '../../lib/iam-actions';
import { PAUSE_CACHE_MS } from '../../lib/lanes/pause';
import { SERVICE_NAME } from '../../lib/observability/observability';
import { runCommand, UsageError } from '../local/cli';
import { explainUnreachable, localQueueUrl } from '../local/queue-address';
import { DEFAULT_QUEUE_NAME, LANE_INFIX, localSqsClient, SQS_REQUEST_HANDLER } from '../local/sqs-server';
import { lanePrefix } from '../stage/lanes';
import {
  type Clients,
  describeStatus,
  findLane,
  type LaneTarget,
  laneStatus,
  pauseLane,
  resumeLane,
} from './lane-pause';

const USAGE = `Usage: npm run endpoint -- pause|resume|status <endpoint> (--stage S [--region R] | --local) [--json]

Pauses, resumes or shows one endpoint's lane (the stage must have lanes).
  pause    tags the lane ingest:paused (when, and by whom): the function stops sending to the endpoint and parks its
           new events in the lane at once; on AWS the lane's event source mapping is disabled too, so nothing reads
           the lane (it costs nothing while paused). Events wait in the lane up to its retention (laneRetentionS).
  resume   enables the mapping, then removes the tag: the backlog drains at the endpoint's rate limit. Function
           instances see a pause or a resume within ${PAUSE_CACHE_MS / 1000} s (their cache of the tag).
  status   paused since when (or not), the lane's visible / delayed / in-flight counts, the mapping's state
  --stage S    the deployed stage (lane queues ${SERVICE_NAME}-<stage>-lane-<endpoint>, function ${SERVICE_NAME}-<stage>-ingest)
  --region R   its region (default: AWS_REGION / your profile's)
  --local      the lanes of a running \`npm start\` (port LOCAL_SQS_PORT, else 9324)
  --json       print the status as JSON

Exit codes: 0 done, 1 error (unknown endpoint, no lanes, AWS refused), 2 bad arguments.

Required permissions (IAM):
${describePermissions(ENDPOINT_CLI_PERMISSIONS)}`;

const COMMANDS = ['pause', 'resume', 'status'] as const;
type Command = (typeof COMMANDS)[number];

interface Args {
  command: Command;
  endpoint: string;
  stage: string | undefined;
  region: string | undefined;
  local: boolean;
  json: boolean;
  help: boolean;
}

function parse(argv: string[]): Args {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        stage: { type: 'string' },
        region: { type: 'string' },
        local: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const flag = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const args = { stage: flag('stage'), region: flag('region'), local: values.local === true };
  const base = { ...args, json: values.json === true, help: values.help === true };
  if (base.help) return { ...base, command: 'status', endpoint: '' };
  const [command, endpoint, ...rest] = positionals;
  if (!COMMANDS.includes(command as Command)) {
    throw new UsageError(`the command must be pause, resume or status (got '${command ?? ''}')`);
  }
  if (!endpoint || rest.length > 0) throw new UsageError('name exactly one endpoint, e.g. `pause audit`');
  if (args.local === (args.stage !== undefined)) throw new UsageError('give either --stage S (AWS) or --local');
  return { ...base, command: command as Command, endpoint };
}

/** The stage's SQS (and on AWS Lambda) clients and where its lanes are. */
function connect(args: Args): { clients: Clients; prefix: string; functionName?: string; where: string } {
  if (args.local) {
    const origin = new URL(localQueueUrl(process.env, DEFAULT_QUEUE_NAME)).origin;
    return { clients: { sqs: localSqsClient(origin) }, prefix: `${DEFAULT_QUEUE_NAME}${LANE_INFIX}`, where: origin };
  }
  const stage = args.stage!;
  const region = args.region ? { region: args.region } : {};
  return {
    clients: {
      sqs: new SQSClient({ ...region, requestHandler: SQS_REQUEST_HANDLER }),
      // Like SQS_REQUEST_HANDLER: without throwOnRequestTimeout a Lambda API that never answers would hang the command.
      lambda: new LambdaClient({
        ...region,
        requestHandler: { connectionTimeout: 5_000, requestTimeout: 15_000, throwOnRequestTimeout: true },
      }),
    },
    prefix: lanePrefix(SERVICE_NAME, stage),
    functionName: `${SERVICE_NAME}-${stage}-ingest`,
    where: `stage ${stage}`,
  };
}

async function main(argv: string[]): Promise<number> {
  const args = parse(argv);
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const { clients, prefix, functionName, where } = connect(args);
  try {
    const queueUrl = await findLane(clients.sqs, prefix, args.endpoint, where);
    const target: LaneTarget = { endpoint: args.endpoint, queueUrl, ...(functionName ? { functionName } : {}) };
    if (args.command === 'pause') {
      const { mapping } = await pauseLane(clients, target, userInfo().username);
      console.log(
        `paused ${args.endpoint}: its new events park in ${queueUrl}${mapping ? `; mapping ${mapping}` : ''}`,
      );
    } else if (args.command === 'resume') {
      const { mapping } = await resumeLane(clients, target);
      console.log(`resumed ${args.endpoint}: its lane drains${mapping ? `; mapping ${mapping}` : ''}`);
    } else {
      const status = await laneStatus(clients, target);
      console.log(args.json ? JSON.stringify(status) : describeStatus(status));
    }
    return 0;
  } catch (error) {
    throw args.local ? explainUnreachable(error, localQueueUrl(process.env, DEFAULT_QUEUE_NAME), '--local') : error;
  } finally {
    clients.sqs.destroy();
    clients.lambda?.destroy();
  }
}

runCommand(USAGE, () => main(process.argv.slice(2)));
