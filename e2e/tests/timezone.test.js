// All-day items in browsers west and east of UTC: the feed sends them in
// FullCalendar's own form (date-only strings, end exclusive), and the page
// passes the feed to FullCalendar unchanged, so each item sits on the days it
// covers whatever the browser's zone.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  Api,
  addDays,
  allDayItem,
  assertNoConsoleProblems,
  calendarIdle,
  eventEl,
  fcButton,
  isFeed,
  launchBrowser,
  localToday,
  newPage,
  randomSuffix,
  signIn,
  withFeed,
  zonedIso,
  TEST_TIMEOUT,
} from '../lib/harness.js';

// The cell of the month grid that holds an event's first day.
const dayCellEvent = (page, ymd, id) =>
  page.locator(`#calendar td.fc-daygrid-day[data-date="${ymd}"] .fc-event[data-work-item-id="${id}"]`);

describe('time zones', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  for (const timezoneId of ['America/Los_Angeles', 'Pacific/Honolulu', 'Asia/Tokyo']) {
    test(`all-day items sit on their own days in ${timezoneId}`, { timeout: TEST_TIMEOUT }, async () => {
      const api = await Api.newUser('tz');
      const sfx = randomSuffix();
      const today = localToday(timezoneId);
      const oneDay = await api.createItem(allDayItem(`One day ${sfx}`, today));
      const threeDays = await api.createItem({
        ...allDayItem(`Three days ${sfx}`, today, { work_type: 'project' }),
        end: `${addDays(today, 3)}T00:00:00Z`,
      });
      // 09:00 to 10:00 where the browser is: a timed event keeps its instant.
      const timed = await api.createItem({
        title: `Timed ${sfx}`,
        work_type: 'activity',
        start: zonedIso(today, 9, 0, timezoneId),
        end: zonedIso(today, 10, 0, timezoneId),
      });

      const { context, page, problems } = await newPage(browser, { timezoneId });
      const bodies = [];
      page.on('response', (res) => {
        if (isFeed(res) && res.ok()) bodies.push(res.json());
      });
      try {
        await signIn(page, api);
        await calendarIdle(page);
        await dayCellEvent(page, today, oneDay.id).waitFor();
        await dayCellEvent(page, today, threeDays.id).first().waitFor();
        await dayCellEvent(page, today, timed.id).waitFor();
        // Nowhere else: not on the day before (the bug of UTC midnights read
        // as instants west of UTC) nor after.
        for (const id of [oneDay.id, timed.id]) {
          assert.equal(await eventEl(page, id).count(), 1, `${id} is shown once`);
        }
        assert.equal(await dayCellEvent(page, addDays(today, -1), threeDays.id).count(), 0, 'three-day item starts a day early');

        // The feed itself: dates for all-day events, instants for timed ones.
        const events = (await Promise.all(bodies)).flat();
        const one = events.find((e) => e.extendedProps.workItemId === oneDay.id);
        assert.deepEqual([one.start, one.end, one.allDay], [today, addDays(today, 1), true]);
        const three = events.find((e) => e.extendedProps.workItemId === threeDays.id);
        assert.deepEqual([three.start, three.end], [today, addDays(today, 3)]);
        const t = events.find((e) => e.extendedProps.workItemId === timed.id);
        assert.equal(Date.parse(t.start), Date.parse(timed.start));

        // The list view names the day and says "all-day".
        await withFeed(page, () => fcButton(page, 'listWeek').click());
        const row = page.locator('#calendar tr.fc-list-event', { hasText: `One day ${sfx}` });
        await row.waitFor();
        assert.match(await row.innerText(), /all-day/i);

        // An all-day item stored as one instant (end == start) on the month
        // grid's first visible day: the grid's range starts at local
        // midnight, after 00:00 UTC west of UTC, and the item still shows.
        await withFeed(page, () => fcButton(page, 'dayGridMonth').click());
        const firstDay = await page.locator('#calendar td.fc-daygrid-day').first().getAttribute('data-date');
        const point = await api.createItem({ title: `Point ${sfx}`, work_type: 'task', start: firstDay, all_day: true });
        await withFeed(page, () => fcButton(page, 'next').click());
        await withFeed(page, () => fcButton(page, 'prev').click());
        await dayCellEvent(page, firstDay, point.id).waitFor();
        assertNoConsoleProblems(problems);
      } finally {
        await context.close();
      }
    });
  }
});
