// Bundles src/index.js into ../static/build/editor.js (global `cellstackEditor`),
// and copies MathJax 3's TeX-to-SVG build (one file, its fonts inside) with the TeX
// extensions it loads on demand into ../static/build/mathjax/: the standalone page
// typesets text/latex output with it, no CDN needed.  Also ui/safe, which
// embedded_sagecell.js has it load: the LaTeX comes from the kernel (anyone's code),
// and TeX's html package (\href, \style, \class, autoloaded) would otherwise put
// javascript: links and arbitrary styles into the page.
import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

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

const mathjax = path.join(here, 'node_modules', 'mathjax');
const mjOut = path.resolve(here, '..', 'static', 'build', 'mathjax');
fs.rmSync(mjOut, { recursive: true, force: true });
fs.mkdirSync(mjOut, { recursive: true });
fs.copyFileSync(path.join(mathjax, 'es5', 'tex-svg.js'), path.join(mjOut, 'tex-svg.js'));
fs.cpSync(path.join(mathjax, 'es5', 'input', 'tex', 'extensions'), path.join(mjOut, 'input', 'tex', 'extensions'),
          { recursive: true });
fs.mkdirSync(path.join(mjOut, 'ui'), { recursive: true });
fs.copyFileSync(path.join(mathjax, 'es5', 'ui', 'safe.js'), path.join(mjOut, 'ui', 'safe.js'));
fs.copyFileSync(path.join(mathjax, 'LICENSE'), path.join(mjOut, 'LICENSE'));
console.log(`built ${outfile} and ${mjOut}`);
