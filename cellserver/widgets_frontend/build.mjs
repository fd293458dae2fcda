// Bundles src/index.js into ../static/build/widgets.js (global `cellstackWidgets`).
import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, '..', 'static', 'build');

// Our kernels run ipywidgets 8: leave out html-manager's ipywidgets 7
// fallback (@jupyter-widgets/base7, controls7), whose CSS would otherwise be
// bundled next to version 8's and restyle the controls.
const noWidgets7 = {
  name: 'no-widgets7',
  setup(build) {
    build.onResolve({ filter: /^@jupyter-widgets\/(base7|controls7)(\/.*)?$/ }, (args) => ({
      path: args.path, namespace: 'widgets7-stub',
    }));
    build.onLoad({ filter: /.*/, namespace: 'widgets7-stub' }, (args) => (
      args.path.endsWith('.css')
        ? { contents: '', loader: 'css' }
        : { contents: 'module.exports = {};', loader: 'js' }));
  },
};

await esbuild.build({
  plugins: [noWidgets7],
  entryPoints: [path.join(here, 'src', 'index.js')],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'iife',
  globalName: 'cellstackWidgets',
  target: ['es2020'],
  outfile: path.join(outdir, 'widgets.js'),
  // Font Awesome (button icons, the ipympl toolbar): the woff2 faces are
  // inlined, since a page on another origin could not load a font file from
  // the cell server without CORS headers; every browser we serve reads woff2,
  // so the older formats (and its SVG fonts) are left out.  Images stay
  // files beside the bundle.
  loader: {
    '.woff2': 'dataurl', '.woff': 'empty', '.ttf': 'empty', '.eot': 'empty',
    '.svg': 'empty', '.png': 'file', '.gif': 'file',
  },
  assetNames: 'widgets-assets/[name]-[hash]',
  define: { 'process.env.NODE_ENV': '"production"', global: 'window' },
  logLevel: 'warning',
});
console.log(`built ${path.join(outdir, 'widgets.js')}`);
