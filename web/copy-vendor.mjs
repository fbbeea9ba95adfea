// Copies the browser files the page needs out of node_modules into
// assets/vendor/, the only part of web/ that calcache serves besides
// index.html and assets/. Runs after `npm ci` (postinstall) or `npm run build`.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, 'assets', 'vendor');
const files = [
  ['fullcalendar/index.global.min.js', 'fullcalendar/index.global.min.js'],
  ['fullcalendar/LICENSE.md', 'fullcalendar/LICENSE.md'],
];

rmSync(vendor, { recursive: true, force: true });
for (const [from, to] of files) {
  const target = join(vendor, to);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(join(here, 'node_modules', from), target);
}
const { version } = JSON.parse(readFileSync(join(here, 'node_modules', 'fullcalendar', 'package.json'), 'utf8'));
console.log(`copied FullCalendar ${version} into assets/vendor/`);
