// Bundles src/index.js into ../static/build/editor.js (global `cellstackEditor`).
import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const outfile = path.resolve(here, '..', 'static', 'build', 'editor.js');

await esbuild.build({
  entryPoints: [path.join(here, 'src', 'index.js')],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'iife',
  globalName: 'cellstackEditor',
  target: ['es2020'],
  outfile,
  legalComments: 'eof',
  logLevel: 'warning',
});
console.log(`built ${outfile}`);
