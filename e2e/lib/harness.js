// Shared helpers of the browser tests: Chromium, an HTTP client for the
// calcache API (test data is made through the API, never from demo data),
// the page's sign-in and dialog, the feed's network log, and polling with
// deadlines (no fixed sleeps anywhere).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

export const BASE_URL = (process.env.E2E_BASE_URL || '').replace(/\/$/, '');
if (!BASE_URL) {
  throw new Error('E2E_BASE_URL is not set: run the suite with `bash e2e/run.sh` from the repository root');
}

// A zone west of UTC, so that all-day items (UTC midnights) would land on
// the wrong day if the page converted them naively.
export const TIMEZONE = process.env.E2E_TIMEZONE || 'America/New_York';
export const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 15000);
// One test's budget; a file's tests run one after another.
export const TEST_TIMEOUT = Number(process.env.E2E_TEST_TIMEOUT_MS || 60000);
export const FEED_PATH = '/api/calendar/feed';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox', // we run as root
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Debian's Chromium. Playwright gives every launch a fresh, empty
// --user-data-dir of its own (it refuses one in `args`) and deletes it at
// close. It also turns the back/forward cache off by default; real browsers
// have it on and the page must cope with it, so it stays on unless asked.
export async function launchBrowser({ backForwardCache = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    ignoreDefaultArgs: backForwardCache ? ['--disable-back-forward-cache'] : [],
    timeout: 30000,
  });
}

export const randomSuffix = () => randomBytes(4).toString('hex');

// ------------------------------------------------------------------ polling

// Calls `check` until it returns a truthy value or the deadline passes.
export async function poll(check, { timeout = TIMEOUT, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

// ------------------------------------------------------------------ dates

// Today's date (YYYY-MM-DD) where the browser is.
export function localToday(timeZone = TIMEZONE) {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
}

export function addDays(ymd, days) {
  const d = new Date(`${ymd}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

// The instant (ISO, UTC) of a wall-clock time on a day where the browser is.
export function zonedIso(ymd, hour, minute = 0, timeZone = TIMEZONE) {
  const [y, m, d] = ymd.split('-').map(Number);
  const wall = Date.UTC(y, m - 1, d, hour, minute);
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
      .formatToParts(new Date(wall))
      .map((p) => [p.type, Number(p.value)]),
  );
  const offset = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute) - wall;
  return new Date(wall - offset).toISOString();
}

// An all-day work item on one day (stored as UTC midnights, end exclusive).
export function allDayItem(title, ymd = localToday(), extra = {}) {
  return { title, work_type: 'task', start: `${ymd}T00:00:00Z`, end: `${addDays(ymd, 1)}T00:00:00Z`, all_day: true, ...extra };
}

// ------------------------------------------------------------------ API

// A signed-in API session (Bearer token), separate from any browser.
export class Api {
  constructor(token, user, password) {
    this.token = token;
    this.user = user;
    this.password = password;
  }

  static async request(method, path, { body, token } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(BASE_URL + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    return { status: res.status, body: json, headers: res.headers };
  }

  static async login(username, password) {
    const res = await Api.request('POST', '/api/login', { body: { username, password } });
    assert.equal(res.status, 200, `login of ${username}: ${JSON.stringify(res.body)}`);
    return new Api(res.body.token, res.body.user, password);
  }

  // A new user with a random name, signed in.
  static async newUser(prefix) {
    const username = `${prefix}_${randomSuffix()}`;
    const password = `pw-${randomSuffix()}-${randomSuffix()}`;
    const res = await Api.request('POST', '/api/signup', { body: { username, password } });
    assert.equal(res.status, 201, `signup of ${username}: ${JSON.stringify(res.body)}`);
    return Api.login(username, password);
  }

  // Another session of the same user (as if from a second device).
  async secondSession() {
    return Api.login(this.user.username, this.password);
  }

  call(method, path, body) {
    return Api.request(method, path, { body, token: this.token });
  }

  async createItem(fields) {
    const res = await this.call('POST', '/api/work-items', fields);
    assert.equal(res.status, 201, `create ${fields.title}: ${JSON.stringify(res.body)}`);
    return res.body;
  }

  async feed(start, end) {
    const q = new URLSearchParams({ start, end });
    const res = await this.call('GET', `${FEED_PATH}?${q}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  }
}

// ------------------------------------------------------------------ pages

// Console errors and warnings and uncaught exceptions of a page. `allow`
// lists patterns a test expects (say, the network error of a failed delete).
export function watchConsole(page) {
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      const { url } = msg.location();
      problems.push(`console.${msg.type()}: ${msg.text()}${url ? ` (${url})` : ''}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`uncaught: ${err.message}`));
  return problems;
}

export function assertNoConsoleProblems(problems, allow = []) {
  const unexpected = problems.filter((p) => !allow.some((re) => re.test(p)));
  assert.deepEqual(unexpected, [], 'the page logged errors or warnings');
}

// A new browser context (its own cookies, cache and storage) with one page.
export async function newPage(browser, { width = 1280, height = 900, timezoneId = TIMEZONE } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, timezoneId, locale: 'en-US' });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  const problems = watchConsole(page);
  return { context, page, problems };
}

export const isFeed = (res) => new URL(res.url()).pathname === FEED_PATH;

// Waits until the calendar has no fetch in flight (the page mirrors
// FullCalendar's loading state in aria-busy).
export async function calendarIdle(page) {
  await page.locator('#calendar[aria-busy="false"]').waitFor({ state: 'attached' });
}

// Runs `action` (a navigation of the calendar) and waits for the feed
// response it causes and for the calendar to have taken it in.
export async function withFeed(page, action) {
  // `action` may be a navigation; the feed is what tells it is done.
  const response = page.waitForResponse(isFeed);
  await action();
  const res = await response;
  // Not `res.finished()`: it never settles for a page restored from the
  // back/forward cache. aria-busy turns false once the events are in.
  await calendarIdle(page);
  return res;
}

export async function signIn(page, api) {
  await page.goto(`${BASE_URL}/`);
  await page.getByLabel('Username').fill(api.user.username);
  await page.getByLabel('Password').fill(api.password);
  await withFeed(page, () => page.getByRole('button', { name: 'Sign in' }).click());
  await page.locator('#account-name', { hasText: api.user.username }).waitFor();
}

export const eventEl = (page, id) => page.locator(`#calendar .fc-event[data-work-item-id="${id}"]`);

export async function assertAbsent(page, id, why) {
  assert.equal(await eventEl(page, id).count(), 0, why || `work item ${id} must not be on the calendar`);
}

// A FullCalendar toolbar button: prev, next, today, dayGridMonth, …
export const fcButton = (page, name) => page.locator(`#calendar .fc-${name}-button`);

// Opens an event's dialog and waits for the owner's actions to show.
export async function openEvent(page, id, { owner = true } = {}) {
  await eventEl(page, id).first().click();
  const dialog = page.locator('#item-dialog[open]');
  await dialog.waitFor();
  if (owner) await page.locator('#view-delete').waitFor({ state: 'visible' });
  return dialog;
}

// Clicks Delete and then the confirmation's Delete. The dialog opened by
// `openEvent` must be showing.
export async function confirmDelete(page) {
  await page.locator('#view-delete').click();
  await page.locator('#dialog-confirm').waitFor({ state: 'visible' });
  await page.locator('#confirm-delete').click();
}

// ------------------------------------------------------------------ network log

// Every feed request and response of a page as the browser saw them, from
// Chrome's DevTools protocol: sent headers, and whether the response came
// from a cache instead of the server.
export async function recordFeedTraffic(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const byId = new Map();
  const entry = (id) => {
    if (!byId.has(id)) byId.set(id, { requestId: id });
    return byId.get(id);
  };
  const isFeedUrl = (url) => {
    try {
      return new URL(url).pathname === FEED_PATH;
    } catch (_) {
      return false;
    }
  };
  cdp.on('Network.requestWillBeSent', (e) => {
    if (!isFeedUrl(e.request.url)) return;
    const it = entry(e.requestId);
    it.url = e.request.url;
    it.headers = Object.assign({}, it.headers, e.request.headers);
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    const it = byId.get(e.requestId) || (e.headers && entry(e.requestId));
    if (it) it.headers = Object.assign({}, it.headers, e.headers); // the headers actually on the wire
  });
  cdp.on('Network.requestServedFromCache', (e) => {
    if (byId.has(e.requestId)) byId.get(e.requestId).servedFromCache = true;
  });
  cdp.on('Network.responseReceived', (e) => {
    if (!isFeedUrl(e.response.url)) return;
    const it = entry(e.requestId);
    it.url = e.response.url;
    it.status = e.response.status;
    it.responseHeaders = e.response.headers;
    it.fromDiskCache = e.response.fromDiskCache;
    it.fromPrefetchCache = e.response.fromPrefetchCache;
    it.fromServiceWorker = e.response.fromServiceWorker;
  });
  return {
    entries: () => [...byId.values()].filter((e) => e.url),
    detach: () => cdp.detach(),
  };
}

const lower = (headers) => Object.fromEntries(Object.entries(headers || {}).map(([k, v]) => [k.toLowerCase(), String(v)]));

// Each feed request went to the server and could not have been answered
// from a browser cache.
export function assertFetchedFromServer(entry) {
  const req = lower(entry.headers);
  const res = lower(entry.responseHeaders);
  const where = `feed request ${entry.url}`;
  assert.equal(entry.status, 200, `${where}: status`);
  assert.ok(!('if-none-match' in req), `${where} sent If-None-Match`);
  assert.ok(!('if-modified-since' in req), `${where} sent If-Modified-Since`);
  assert.ok(!entry.servedFromCache, `${where} was served from the browser cache`);
  assert.ok(!entry.fromDiskCache && !entry.fromPrefetchCache && !entry.fromServiceWorker, `${where} did not come from the server`);
  assert.match(res['cache-control'] || '', /no-store/, `${where}: Cache-Control`);
  assert.match(res['x-cache'] || '', /^(HIT|MISS|BYPASS)$/, `${where}: X-Cache`);
}
