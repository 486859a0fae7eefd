// What serverless variables cannot do, for the stage being packaged: check the stage params and the endpoints file
// (endpoints/<stage>.yml) with the function's own parsers (a bad ENDPOINTS, ENDPOINT_CREDENTIALS or endpoints file
// fails `npm run package`, not the first invocation in production), bundle the file, check the endpoints' rate budgets,
// derive the queue's visibility timeout, and generate what depends on the endpoint list: the alarms, the dashboard,
// the lanes and the IAM policy for the endpoint credentials. One TypeScript module per concern in infra/stage/.
// serverless.yml uses it as ${file(./infra/stage.js):<export>}; every export receives { resolveVariable,
// resolveConfigurationProperty } from the framework (osls, serverless v3 and v4 alike), which loads this file with
// require(): it takes no TypeScript, so the modules are loaded by tsx (a dev dependency, like the framework itself).

let loaded;

/** One load for every variable: each tsImport evaluates the modules anew, and the stage must be checked once. */
function stage() {
  loaded ??= import('tsx/esm/api').then(({ tsImport }) => tsImport('./stage/index.ts', import.meta.url));
  return loaded;
}

export const queueVisibilityTimeoutS = async (context) => (await stage()).queueVisibilityTimeoutS(context);
export const ledgerTtlS = async (context) => (await stage()).ledgerTtlS(context);
export const errorAlarmPeriods = async (context) => (await stage()).errorAlarmPeriods(context);
export const queueAgeAlarmS = async (context) => (await stage()).queueAgeAlarmS(context);
export const endpointsBundle = async (context) => (await stage()).endpointsBundle(context);
export const batchSize = async (context) => (await stage()).batchSize(context);
export const resources = async (context) => (await stage()).resources(context);
