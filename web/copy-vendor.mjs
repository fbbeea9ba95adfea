// Copies the browser files the page needs out of node_modules into
// assets/vendor/<package>-<version>/, the only part of web/ that calcache
// serves besides index.html and assets/. The version in the path lets
// calcache send vendor files as immutable (cached for a year): a new version
// is a new URL. index.html names that path; this script refuses to finish
// when it names another version, so an upgrade cannot go half-way.
// Runs after `npm ci` (postinstall) or `npm run build`.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, 'assets', 'vendor');
const { version } = JSON.parse(readFileSync(join(here, 'node_modules', 'fullcalendar', 'package.json'), 'utf8'));
const dir = `fullcalendar-${version}`;
const files = [
  ['fullcalendar/index.global.min.js', `${dir}/index.global.min.js`],
  ['fullcalendar/LICENSE.md', `${dir}/LICENSE.md`],
];

rmSync(vendor, { recursive: true, force: true });
for (const [from, to] of files) {
  const target = join(vendor, to);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(join(here, 'node_modules', from), target);
}
console.log(`copied FullCalendar ${version} into assets/vendor/${dir}/`);

const page = readFileSync(join(here, 'index.html'), 'utf8');
if (!page.includes(`/assets/vendor/${dir}/index.global.min.js`)) {
  console.error(`index.html does not load /assets/vendor/${dir}/index.global.min.js: update its <script> to FullCalendar ${version}`);
  process.exit(1);
}
