// Bundles page/entry.js (with livekit-client) into dist/lk-page.js and copies page/index.html to
// dist/index.html. dist/ is what driver.mjs serves on 127.0.0.1. Run by tools/setup_browser.sh.
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const readJson = async (path) => JSON.parse(await readFile(path, 'utf8'));

await mkdir(dist, { recursive: true });
const livekit = await readJson(join(here, 'node_modules', 'livekit-client', 'package.json'));
await build({
  entryPoints: [join(here, 'page', 'entry.js')],
  outfile: join(dist, 'lk-page.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome120'],
  sourcemap: 'linked',
  logLevel: 'warning',
  define: { __LIVEKIT_CLIENT_VERSION__: JSON.stringify(livekit.version) },
});
await copyFile(join(here, 'page', 'index.html'), join(dist, 'index.html'));
await writeFile(
  join(dist, 'versions.json'),
  JSON.stringify({ 'livekit-client': livekit.version }, null, 2) + '\n',
);
console.log(`build: dist/lk-page.js (livekit-client ${livekit.version})`);
