// Two users in two browser contexts (separate cookies and caches) against
// one server and one shared feed cache.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  Api,
  addDays,
  allDayItem,
  assertAbsent,
  assertNoConsoleProblems,
  confirmDelete,
  eventEl,
  fcButton,
  isFeed,
  launchBrowser,
  localToday,
  newPage,
  openEvent,
  randomSuffix,
  signIn,
  withFeed,
  zonedIso,
  TEST_TIMEOUT,
} from '../lib/harness.js';

describe('two users', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test("3. user B in another browser context never sees user A's items", { timeout: TEST_TIMEOUT }, async () => {
    const [alice, bob] = await Promise.all([Api.newUser('alice'), Api.newUser('bob')]);
    const sfx = randomSuffix();
    const today = localToday();
    const aliceItems = [
      await alice.createItem(allDayItem(`Alice today ${sfx}`, today, { work_type: 'project' })),
      await alice.createItem(allDayItem(`Alice last month ${sfx}`, addDays(today, -31))),
      await alice.createItem(allDayItem(`Alice next month ${sfx}`, addDays(today, 31), { work_type: 'activity' })),
      await alice.createItem({
        title: `Alice timed ${sfx}`,
        work_type: 'task',
        start: zonedIso(today, 12),
        end: zonedIso(today, 13, 30),
      }),
    ];
    const bobItem = await bob.createItem(allDayItem(`Bob today ${sfx}`, today));
    const secrets = aliceItems.flatMap((i) => [i.id, i.title]);

    const a = await newPage(browser);
    const b = await newPage(browser);
    const bobBodies = [];
    b.page.on('response', (res) => {
      if (isFeed(res)) bobBodies.push(res.text());
    });
    try {
      await signIn(a.page, alice);
      await eventEl(a.page, aliceItems[0].id).waitFor();
      await signIn(b.page, bob);
      await eventEl(b.page, bobItem.id).waitFor();

      // Both walk the same ranges, Alice first each time, so any feed
      // cache entry Bob could wrongly be served is already warm.
      const steps = [
        ['prev', () => fcButton(a.page, 'prev').click(), () => fcButton(b.page, 'prev').click()],
        ['next', () => fcButton(a.page, 'next').click(), () => fcButton(b.page, 'next').click()],
        ['next', () => fcButton(a.page, 'next').click(), () => fcButton(b.page, 'next').click()],
        ['today', () => fcButton(a.page, 'today').click(), () => fcButton(b.page, 'today').click()],
        ['week', () => fcButton(a.page, 'timeGridWeek').click(), () => fcButton(b.page, 'timeGridWeek').click()],
        ['day', () => fcButton(a.page, 'timeGridDay').click(), () => fcButton(b.page, 'timeGridDay').click()],
        ['list', () => fcButton(a.page, 'listWeek').click(), () => fcButton(b.page, 'listWeek').click()],
      ];
      for (const [name, stepA, stepB] of steps) {
        await withFeed(a.page, stepA);
        await withFeed(b.page, stepB);
        for (const item of aliceItems) await assertAbsent(b.page, item.id, `Bob sees ${item.title} after ${name}`);
        assert.equal(await b.page.getByText(`Alice`, { exact: false }).count(), 0, `an Alice title on Bob's page after ${name}`);
      }
      await eventEl(a.page, aliceItems[3].id).waitFor(); // Alice does see her timed item this week

      const bodies = await Promise.all(bobBodies);
      assert.ok(bodies.length >= 8, `Bob's feed was fetched ${bodies.length} times`);
      for (const body of bodies) {
        for (const secret of secrets) assert.ok(!body.includes(secret), `Bob's feed contained ${secret}`);
      }
      assert.equal((await bob.call('GET', `/api/work-items/${aliceItems[0].id}`)).status, 404);
      assertNoConsoleProblems(a.problems);
      assertNoConsoleProblems(b.problems);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test("4. an item assigned to B and deleted by A is gone from B's calendar at B's next navigation", { timeout: TEST_TIMEOUT }, async () => {
    const [alice, bob] = await Promise.all([Api.newUser('alice'), Api.newUser('bob')]);
    const sfx = randomSuffix();
    const shared = await alice.createItem(allDayItem(`Shared ${sfx}`, undefined, { assignee_ids: [bob.user.id], work_type: 'activity' }));
    const bobOwn = await bob.createItem(allDayItem(`Bob own ${sfx}`));

    const a = await newPage(browser);
    const b = await newPage(browser);
    try {
      await signIn(b.page, bob);
      await eventEl(b.page, shared.id).waitFor();
      // Bob is an assignee: he sees the details, but not Edit or Delete.
      await openEvent(b.page, shared.id, { owner: false });
      await b.page.locator('#view-owner', { hasText: alice.user.username }).waitFor();
      assert.equal(await b.page.locator('#view-delete').isVisible(), false);
      assert.equal(await b.page.locator('#view-edit').isVisible(), false);
      await b.page.keyboard.press('Escape');
      await b.page.locator('#item-dialog[open]').waitFor({ state: 'detached' });

      await signIn(a.page, alice);
      await openEvent(a.page, shared.id);
      const answered = a.page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes(shared.id));
      await confirmDelete(a.page);
      assert.equal((await answered).status(), 204);
      await eventEl(a.page, shared.id).waitFor({ state: 'detached' });

      // Bob's next navigation shows it gone.
      const prev = await withFeed(b.page, () => fcButton(b.page, 'prev').click());
      assert.ok(!(await prev.text()).includes(shared.id));
      const back = await withFeed(b.page, () => fcButton(b.page, 'next').click());
      await eventEl(b.page, bobOwn.id).waitFor();
      await assertAbsent(b.page, shared.id, "the deleted item is still on Bob's calendar");
      assert.ok(!(await back.text()).includes(shared.id), "Bob's feed still lists the deleted item");
      assertNoConsoleProblems(a.problems);
      assertNoConsoleProblems(b.problems);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });
});
