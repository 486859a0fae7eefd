// The package step's checks and generated pieces, one module per concern; infra/stage.js hands the framework's
// variables (variables.ts) and the generated resources (resources.ts) to serverless.yml, tests import the rest here.

export * from './dashboard';
export * from './endpoints';
export * from './errors';
export * from './iam';
export * from './lanes';
export * from './limits';
export * from './load';
export * from './outage';
export * from './params';
export * from './rates';
export * from './resources';
export * from './variables';
