// What serverless variables cannot do, for the stage being packaged: check the stage params and the endpoints file
// (endpoints/<stage>.yml) with the function's own parsers (a bad ENDPOINTS, ENDPOINT_CREDENTIALS or endpoints file
// fails `npm run package`, not the first invocation in production), bundle the file, check the endpoints' rate budgets,
// derive the queue's visibility timeout, and generate what depends on the endpoint list: the alarms, the dashboard,
// the lanes and the IAM policy for the endpoint credentials. One module per concern in infra/stage/.
// serverless.yml uses it as ${file(./infra/stage.js):<export>}; every export receives { resolveVariable,
// resolveConfigurationProperty } from the framework (osls, serverless v3 and v4 alike).

export * from './stage/dashboard.js';
export * from './stage/endpoints.js';
export * from './stage/iam.js';
export * from './stage/limits.js';
export * from './stage/outage.js';
export * from './stage/params.js';
export * from './stage/rates.js';
export * from './stage/resources.js';
export * from './stage/variables.js';
