// esbuild plugins for serverless.yml's custom.esbuild (serverless-esbuild `plugins:`) and the bench's builds.
const { isBuiltin } = require('node:module');

/**
 * Node built-ins imported from ESM code are loaded with require() instead: an ESM import of node:http builds its ESM
 * facade, whose getters load Node's internal undici (about 50 ms of cold start on Node 22 and 24, bench table 4).
 */
const builtinsViaRequire = {
  name: 'builtins-via-require',
  setup(build) {
    build.onResolve({ filter: /^[a-z:_/]+$/ }, (args) =>
      args.kind === 'import-statement' && isBuiltin(args.path) && args.namespace !== 'builtin-via-require'
        ? { path: args.path, namespace: 'builtin-via-require' }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'builtin-via-require' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

module.exports = [builtinsViaRequire];
