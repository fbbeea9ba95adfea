// Live updates: an open calendar drops an item deleted elsewhere by itself,
// within 2 s, with no click — also after its change stream was cut and
// reconnected, and for a change made while it was cut.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import {
  Api,
  addDays,
  allDayItem,
  assertNoConsoleProblems,
  eventEl,
  launchBrowser,
  localToday,
  newPage,
  randomSuffix,
  signIn,
  TEST_TIMEOUT,
} from '../lib/harness.js';

const LIVE_BUDGET_MS = 2000;

// Kills the server's Pub/Sub connection (named calcache-changes:<prefix>
// in CLIENT LIST), as a Redis restart or a network cut would.
function killSubscriber() {
  const redis = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  const name = `calcache-changes:${process.env.E2E_KEY_PREFIX}`;
  const list = execFileSync('redis-cli', ['-u', redis, 'CLIENT', 'LIST', 'TYPE', 'pubsub'], { encoding: 'utf8' });
  const ids = list
    .split('\n')
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /(?:^|\s)id=(\d+)/.exec(line)[1]);
  assert.ok(ids.length > 0, `no subscriber named ${name} in CLIENT LIST`);
  for (const id of ids) execFileSync('redis-cli', ['-u', redis, 'CLIENT', 'KILL', 'ID', id]);
}

const liveStatus = (page) => page.locator('#live-status');

async function waitLive(page) {
  await page.locator('#live-status[data-state="live"]').waitFor();
}

// Deletes `item` through A's API session and waits (at most the budget)
// for it to leave B's calendar; returns the milliseconds it took.
async function deleteAndWatch(alice, page, item) {
  const started = Date.now();
  const res = await alice.call('DELETE', `/api/work-items/${item.id}`);
  assert.equal(res.status, 204);
  await eventEl(page, item.id).waitFor({ state: 'detached', timeout: LIVE_BUDGET_MS });
  return Date.now() - started;
}

describe('live updates', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test("6. A deletes an assigned item; B's open month view drops it within 2 s, before and after B's stream is cut", { timeout: TEST_TIMEOUT }, async () => {
    const [alice, bob] = await Promise.all([Api.newUser('alice'), Api.newUser('bob')]);
    const sfx = randomSuffix();
    // Spread over five days from today (always on this month's grid), so
    // that no day cell hides events behind "+ more".
    const shared = (title, day = 0) =>
      allDayItem(`${title} ${sfx}`, addDays(localToday(), day), { assignee_ids: [bob.user.id], work_type: 'activity' });
    const first = await alice.createItem(shared('First'));
    const more = [];
    for (let i = 0; i < 9; i += 1) more.push(await alice.createItem(shared(`More ${i}`, 1 + (i % 4))));
    const whileCut = await alice.createItem(shared('While cut'));
    const afterCut = await alice.createItem(shared('After cut'));
    const bobOwn = await bob.createItem(allDayItem(`Bob own ${sfx}`));

    const a = await newPage(browser);
    const b = await newPage(browser);
    try {
      await signIn(a.page, alice);
      await signIn(b.page, bob);
      for (const item of [first, ...more, whileCut, afterCut, bobOwn]) await eventEl(b.page, item.id).waitFor();
      await waitLive(b.page);
      assert.equal(await liveStatus(b.page).textContent(), 'Live');

      // 1. Live: no click, no navigation on B's side.
      const took = [await deleteAndWatch(alice, b.page, first)];
      for (const item of more) took.push(await deleteAndWatch(alice, b.page, item));
      took.sort((x, y) => x - y);
      const pct = (p) => took[Math.min(took.length - 1, Math.round((p / 100) * (took.length - 1)))];
      console.log(`live: ${took.length} deletes gone from B's calendar (DELETE sent -> event element detached): ` +
        `p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${took[took.length - 1]} ms`);

      // 2. The stream is cut: the server's Redis subscription is killed,
      // so it ends every stream it holds; the page says so.
      killSubscriber();
      await b.page.locator('#live-status[data-state="reconnecting"]').waitFor();
      // A change while B is reconnecting (the browser waits `retry:` first).
      const cut = Date.now();
      assert.equal((await alice.call('DELETE', `/api/work-items/${whileCut.id}`)).status, 204);
      // Reconnected with Last-Event-ID: told to refetch what it missed.
      await eventEl(b.page, whileCut.id).waitFor({ state: 'detached', timeout: 10000 });
      console.log(`live: the change made while cut reached B ${Date.now() - cut} ms after it was made`);
      await waitLive(b.page);

      // 3. Live again after the reconnect.
      const tookAfter = await deleteAndWatch(alice, b.page, afterCut);
      console.log(`live: after the reconnect, gone ${tookAfter} ms after the DELETE`);
      await eventEl(b.page, bobOwn.id).waitFor();

      // A's own page saw its changes too and still shows nothing stale.
      assertNoConsoleProblems(a.problems);
      assertNoConsoleProblems(b.problems);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('7. signing out in one tab sends the other tab of the same session to the sign-in form within 2 s, no click', { timeout: TEST_TIMEOUT }, async () => {
    const alice = await Api.newUser('alice');
    const sfx = randomSuffix();
    const item = await alice.createItem(allDayItem(`Mine ${sfx}`));
    const { context, page, problems } = await newPage(browser);
    try {
      await signIn(page, alice);
      await eventEl(page, item.id).waitFor();
      await waitLive(page);
      const other = await context.newPage();
      await other.goto(page.url());
      await eventEl(other, item.id).waitFor();
      await waitLive(other);
      await page.locator('#signout').click();
      await page.locator('#signin-view').waitFor();
      // The other tab's stream ends with the session: it shows the sign-in.
      await other.locator('#signin-error', { hasText: 'Your session has ended' }).waitFor({ timeout: LIVE_BUDGET_MS });
      assert.equal(await liveStatus(other).isVisible(), false);
      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });
});
