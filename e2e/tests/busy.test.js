// A busy day in the month view: the cell keeps its size and shows "+N more"
// instead of overflowing; the link opens the whole day.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  Api,
  allDayItem,
  assertNoConsoleProblems,
  calendarIdle,
  launchBrowser,
  localToday,
  newPage,
  randomSuffix,
  signIn,
  TEST_TIMEOUT,
} from '../lib/harness.js';

describe('busy month', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('a day with ten items shows three and "+7 more", and the link opens all ten', { timeout: TEST_TIMEOUT }, async () => {
    const api = await Api.newUser('busy');
    const sfx = randomSuffix();
    const today = localToday();
    const items = [];
    for (let i = 0; i < 10; i++) items.push(await api.createItem(allDayItem(`Busy ${i} ${sfx}`, today)));

    const { context, page, problems } = await newPage(browser);
    try {
      await signIn(page, api);
      await calendarIdle(page);
      const cell = page.locator(`#calendar td.fc-daygrid-day[data-date="${today}"]`);
      const more = cell.locator('.fc-daygrid-more-link');
      await more.waitFor();
      assert.equal((await more.innerText()).trim(), '+7 more');
      const shown = await cell.locator('.fc-event').evaluateAll(
        (els) => els.filter((e) => e.getBoundingClientRect().height > 0 && getComputedStyle(e).visibility !== 'hidden').length,
      );
      assert.equal(shown, 3, 'events shown in the busy cell');
      // Four rows (three events and the link) keep the cell small; without
      // the limit ten events make it over 250 px high.
      const box = await cell.boundingBox();
      assert.ok(box.height < 160, `the busy cell is ${box.height}px high`);

      await more.click();
      const popover = page.locator('.fc-popover');
      await popover.waitFor();
      for (const item of items) {
        await popover.locator(`.fc-event[data-work-item-id="${item.id}"]`).waitFor();
      }
      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });
});
