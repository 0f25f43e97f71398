// Bundles page/app.js (with livekit-client) into dist/demo.js and copies page/index.html to
// dist/. Run by tools/setup_demo_web.sh:
//
//   node build.mjs [NODE_MODULES]
//
// NODE_MODULES (default: tests/interop/browser/node_modules of this repository) holds the npm
// packages pinned by that folder's package-lock.json (livekit-client, esbuild): the demo page
// and the browser harness share one lockfile.
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = resolve(
  process.argv[2] ?? join(here, '..', '..', '..', '..', 'tests', 'interop', 'browser', 'node_modules'),
);
const require = createRequire(join(nodeModules, '..', 'package.json'));
const { build } = require('esbuild');

const dist = join(here, 'dist');
const livekit = JSON.parse(
  await readFile(join(nodeModules, 'livekit-client', 'package.json'), 'utf8'),
);
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'page', 'app.js')],
  outfile: join(dist, 'demo.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome120', 'firefox120', 'safari17'],
  sourcemap: 'linked',
  logLevel: 'warning',
  nodePaths: [nodeModules],
  define: { __LIVEKIT_CLIENT_VERSION__: JSON.stringify(livekit.version) },
});
await copyFile(join(here, 'page', 'index.html'), join(dist, 'index.html'));
await writeFile(
  join(dist, 'versions.json'),
  JSON.stringify({ 'livekit-client': livekit.version }, null, 2) + '\n',
);
console.log(`build: ${join(dist, 'demo.js')} (livekit-client ${livekit.version})`);
