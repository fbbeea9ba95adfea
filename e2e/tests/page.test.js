// The page itself: sign-in and sign-out, create and edit, filters,
// colours, today, keyboard use, a 360 px screen, and the screenshot.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import {
  Api,
  BASE_URL,
  addDays,
  allDayItem,
  assertNoConsoleProblems,
  calendarIdle,
  eventEl,
  fcButton,
  launchBrowser,
  localToday,
  newPage,
  openEvent,
  poll,
  randomSuffix,
  signIn,
  withFeed,
  zonedIso,
  TEST_TIMEOUT,
} from '../lib/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(here, '..', 'artifacts');
const DOCS_SCREENSHOT = join(here, '..', '..', 'docs', 'screenshot.png');

const backgroundOf = (locator) => locator.evaluate((el) => getComputedStyle(el).backgroundColor);

describe('the calendar page', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  test('signed out: the sign-in form, a wrong password, sign-in, sign-out', { timeout: TEST_TIMEOUT }, async () => {
    const api = await Api.newUser('signin');
    const { context, page, problems } = await newPage(browser);
    try {
      await page.goto(`${BASE_URL}/`);
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      assert.equal(await page.locator('#calendar-view').isVisible(), false);
      assert.deepEqual(problems, [], 'a signed-out visit is quiet (no 401 from /api/me)');

      await page.getByLabel('Username').fill(api.user.username);
      await page.getByLabel('Password').fill('not-the-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('#signin-error', { hasText: 'wrong username or password' }).waitFor();

      await signIn(page, api);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.locator('#signin-error', { hasText: 'You have signed out.' }).waitFor();
      assert.equal(await page.locator('#calendar').count(), 1);
      assert.equal(await page.locator('#calendar .fc-view').count(), 0, 'the calendar is gone');

      // The session really ended: a reload shows the sign-in form again.
      await page.reload();
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      const login401 = /status of 401.*\/api\/login/;
      assertNoConsoleProblems(problems, [login401]);
    } finally {
      await context.close();
    }
  });

  test('a session ended elsewhere sends the page back to the sign-in form', { timeout: TEST_TIMEOUT }, async () => {
    const api = await Api.newUser('ended');
    const { context, page, problems } = await newPage(browser);
    // Without live updates (their stream would end the page by itself, see
    // live.test.js): the next feed request finds the session gone.
    await page.route('**/api/calendar/changes*', (route) => route.abort());
    try {
      await signIn(page, api);
      const cookie = (await context.cookies()).find((c) => c.name === 'session');
      assert.ok(cookie && cookie.httpOnly, 'the session cookie is HttpOnly');
      // The same session signs out from another tab or device.
      assert.equal((await Api.request('POST', '/api/logout', { token: cookie.value })).status, 204);
      await fcButton(page, 'next').click();
      await page.locator('#signin-error', { hasText: 'Your session has ended' }).waitFor();
      assert.equal(await page.locator('#calendar .fc-view').count(), 0);
      assertNoConsoleProblems(problems, [/status of 401.*\/api\/calendar\/feed/, /\/api\/calendar\/changes/]);
    } finally {
      await context.close();
    }
  });

  test('create with the button and by selecting a day, edit, filters, colours, today', { timeout: TEST_TIMEOUT }, async () => {
    const other = await Api.newUser('helper');
    const api = await Api.newUser('editor');
    const sfx = randomSuffix();
    const today = localToday();
    const { context, page, problems } = await newPage(browser);
    try {
      await signIn(page, api);
      // Today is highlighted.
      const todayCell = page.locator('#calendar td.fc-daygrid-day.fc-day-today');
      await todayCell.waitFor();
      assert.equal(await backgroundOf(todayCell), 'rgb(254, 243, 199)');

      // With the button: a timed activity.
      const form = page.locator('#dialog-edit');
      await page.getByRole('button', { name: 'New item' }).click();
      await form.waitFor({ state: 'visible' });
      assert.equal(await page.evaluate(() => document.activeElement.id), 'f-title', 'the title field has the focus');
      await form.getByLabel('Title', { exact: true }).fill(`Workshop ${sfx}`);
      await form.getByLabel('Type', { exact: true }).selectOption('activity');
      await form.getByLabel('All day', { exact: true }).uncheck();
      await form.getByLabel('Start', { exact: true }).fill(`${today}T10:00`);
      await form.getByLabel('End', { exact: true }).fill(`${today}T11:30`);
      let created = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/api/work-items'));
      await form.getByRole('button', { name: 'Save' }).click();
      const workshop = await (await created).json();
      assert.equal(Date.parse(workshop.start), Date.parse(zonedIso(today, 10)), 'start in the browser time zone');
      assert.equal(Date.parse(workshop.end), Date.parse(zonedIso(today, 11, 30)));
      assert.equal(workshop.all_day, false);
      await page.locator('#notice', { hasText: `Created “Workshop ${sfx}”` }).waitFor();
      await calendarIdle(page);
      await eventEl(page, workshop.id).waitFor();

      // By selecting today's cell: an all-day item for today.
      const frame = todayCell.locator('.fc-daygrid-day-frame');
      const box = await frame.boundingBox();
      await page.mouse.click(box.x + box.width / 2, box.y + box.height - 6);
      await form.waitFor({ state: 'visible' });
      assert.equal(await form.getByLabel('All day', { exact: true }).isChecked(), true);
      assert.equal(await form.getByLabel('Start', { exact: true }).inputValue(), today);
      assert.equal(await form.getByLabel('End', { exact: true }).inputValue(), today);
      await form.getByLabel('Title', { exact: true }).fill(`Errand ${sfx}`);
      created = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/api/work-items'));
      await form.getByRole('button', { name: 'Save' }).click();
      const errand = await (await created).json();
      assert.deepEqual(
        [Date.parse(errand.start), Date.parse(errand.end), errand.all_day, errand.work_type],
        [Date.parse(`${today}T00:00:00Z`), Date.parse(`${addDays(today, 1)}T00:00:00Z`), true, 'task'],
        'one whole day, stored as UTC midnights with an exclusive end',
      );
      await calendarIdle(page);
      await eventEl(page, errand.id).waitFor();

      // A colour per work type.
      assert.equal(await backgroundOf(eventEl(page, errand.id).first()), 'rgb(180, 83, 9)');
      const workshopDot = eventEl(page, workshop.id).first().locator('.fc-daygrid-event-dot');
      assert.equal(await workshopDot.evaluate((el) => getComputedStyle(el).borderTopColor), 'rgb(4, 120, 87)');

      // Edit: title, status, assignee.
      await openEvent(page, errand.id);
      await page.getByRole('button', { name: 'Edit' }).click();
      await form.waitFor({ state: 'visible' });
      await form.getByLabel('Title', { exact: true }).fill(`Errand renamed ${sfx}`);
      await form.getByLabel('Status', { exact: true }).selectOption('in_progress');
      await form.getByLabel(other.user.username, { exact: true }).check();
      const patched = page.waitForResponse((r) => r.request().method() === 'PATCH');
      await form.getByRole('button', { name: 'Save' }).click();
      assert.equal((await patched).status(), 200);
      await page.locator('#notice', { hasText: `Saved “Errand renamed ${sfx}”` }).waitFor();
      await calendarIdle(page);
      await eventEl(page, errand.id).filter({ hasText: `Errand renamed ${sfx}` }).waitFor();
      const stored = (await api.call('GET', `/api/work-items/${errand.id}`)).body;
      assert.equal(stored.status, 'in_progress');
      assert.deepEqual(stored.assignee_ids, [other.user.id]);

      // A form error is shown in the form, and its field gets the focus.
      await openEvent(page, errand.id);
      await page.getByRole('button', { name: 'Edit' }).click();
      await form.getByLabel('Title', { exact: true }).fill('   ');
      await form.getByRole('button', { name: 'Save' }).click();
      await page.locator('#edit-error', { hasText: 'Title is required.' }).waitFor();
      assert.equal(await page.evaluate(() => document.activeElement.id), 'f-title');
      await form.getByRole('button', { name: 'Cancel' }).click();
      await page.keyboard.press('Escape');
      await page.locator('#item-dialog[open]').waitFor({ state: 'detached' });

      // Filters ask the server again with work_type / status.
      let res = await withFeed(page, () => page.locator('#filter-type').selectOption('activity'));
      assert.equal(new URL(res.url()).searchParams.get('work_type'), 'activity');
      await eventEl(page, workshop.id).waitFor();
      assert.equal(await eventEl(page, errand.id).count(), 0);
      await withFeed(page, () => page.locator('#filter-type').selectOption(''));
      res = await withFeed(page, () => page.locator('#filter-status').selectOption('in_progress'));
      assert.equal(new URL(res.url()).searchParams.get('status'), 'in_progress');
      await eventEl(page, errand.id).waitFor();
      assert.equal(await eventEl(page, workshop.id).count(), 0);

      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });

  test('usable by keyboard: open with Enter, focus stays in the dialog, Escape closes, delete without a mouse', { timeout: TEST_TIMEOUT }, async () => {
    const api = await Api.newUser('keys');
    const sfx = randomSuffix();
    const item = await api.createItem(allDayItem(`Keyboard ${sfx}`));
    const { context, page, problems } = await newPage(browser);
    try {
      // Sign in with the keyboard only; the username field has the focus.
      await page.goto(`${BASE_URL}/`);
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-username');
      await page.keyboard.type(api.user.username);
      await page.keyboard.press('Tab');
      await page.keyboard.type(api.password);
      await withFeed(page, () => page.keyboard.press('Enter'));

      const controls = await page.$$eval(
        '#new-item, #signout, #view-edit, #view-delete, #confirm-delete, #confirm-cancel, #edit-save, #edit-cancel, #error-close, #calendar .fc-button',
        (els) => els.map((e) => e.tagName),
      );
      assert.ok(controls.length > 10 && controls.every((t) => t === 'BUTTON'), `controls are buttons: ${controls}`);

      const event = eventEl(page, item.id).first();
      await event.focus();
      await page.keyboard.press('Enter');
      await page.locator('#item-dialog[open]').waitFor();
      await page.locator('#view-delete').waitFor({ state: 'visible' });
      const inDialog = () => page.evaluate(() => document.getElementById('item-dialog').contains(document.activeElement));
      assert.ok(await inDialog(), 'the dialog has the focus');
      for (let i = 0; i < 6; i += 1) {
        await page.keyboard.press('Tab');
        assert.ok(await inDialog(), 'Tab stays inside the modal dialog');
      }
      await page.keyboard.press('Escape');
      await page.locator('#item-dialog[open]').waitFor({ state: 'detached' });
      assert.equal(
        await page.evaluate(() => document.activeElement?.dataset?.workItemId),
        item.id,
        'the focus returns to the event',
      );

      // Delete: Enter, Tab to Delete, Enter; the confirmation focuses
      // Cancel (the safe choice), Shift+Tab reaches Delete.
      await page.keyboard.press('Enter');
      await page.locator('#view-delete').waitFor({ state: 'visible' });
      await page.locator('#view-delete').focus();
      await page.keyboard.press('Enter');
      await page.locator('#dialog-confirm').waitFor({ state: 'visible' });
      assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-cancel');
      await page.keyboard.press('Shift+Tab');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-delete');
      await page.keyboard.press('Enter');
      await eventEl(page, item.id).waitFor({ state: 'detached' });
      await poll(async () => (await api.call('GET', `/api/work-items/${item.id}`)).status === 404, { message: 'the delete' });
      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });

  test('a dialog closed and reopened in the same moment keeps Edit and Delete', { timeout: TEST_TIMEOUT }, async () => {
    // <dialog> dispatches `close` as a task after it closed: a reopening
    // that runs first must not have its state cleared by the late event
    // (seen as a flaky keyboard test: Escape, then Enter at once).
    const api = await Api.newUser('reopen');
    const item = await api.createItem(allDayItem(`Reopen ${randomSuffix()}`));
    const { context, page, problems } = await newPage(browser);
    try {
      await signIn(page, api);
      await eventEl(page, item.id).first().click();
      await page.locator('#view-delete').waitFor({ state: 'visible' });
      // Close and reopen within one task, before `close` is delivered.
      await page.evaluate((id) => {
        document.getElementById('item-dialog').close();
        document.querySelector(`[data-work-item-id="${id}"]`).click();
      }, item.id);
      await page.locator('#item-dialog[open]').waitFor();
      await page.locator('#view-delete').waitFor({ state: 'visible' });
      await page.locator('#view-edit').waitFor({ state: 'visible' });
      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });

  test('readable at 360 px wide', { timeout: TEST_TIMEOUT }, async () => {
    const api = await Api.newUser('phone');
    const sfx = randomSuffix();
    const item = await api.createItem(allDayItem(`Phone ${sfx} with a rather long title to wrap`, undefined, { work_type: 'project' }));
    const today = localToday();
    await api.createItem({ title: `Timed ${sfx} Supercalifragilisticexpialidocious`, work_type: 'activity', start: zonedIso(today, 10), end: zonedIso(today, 11, 30) });
    const { context, page, problems } = await newPage(browser, { width: 360, height: 740 });
    // Nothing is wider than the screen: not the page, and not the calendar
    // (whose own overflow would be clipped, not scrollable).
    const noSideScroll = async (where) => {
      const widths = await page.evaluate(() => {
        const cal = document.getElementById('calendar');
        return {
          page: document.documentElement.scrollWidth,
          calendar: cal.offsetParent ? cal.scrollWidth - cal.clientWidth : 0,
        };
      });
      assert.ok(widths.page <= 360, `${where}: the page is ${widths.page} px wide`);
      assert.ok(widths.calendar <= 0, `${where}: the calendar overflows by ${widths.calendar} px`);
    };
    try {
      await page.goto(`${BASE_URL}/`);
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await noSideScroll('sign-in');
      await signIn(page, api);
      await page.locator('#calendar .fc-list').waitFor(); // a list on a narrow screen
      await eventEl(page, item.id).waitFor();
      await noSideScroll('list view');
      for (const view of ['dayGridMonth', 'timeGridWeek', 'timeGridDay']) {
        await withFeed(page, () => fcButton(page, view).click());
        await noSideScroll(view);
      }
      await withFeed(page, () => fcButton(page, 'dayGridMonth').click());
      const size = await page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
      assert.ok(size >= 16, `body text is ${size} px`);

      await openEvent(page, item.id);
      const box = await page.locator('#item-dialog').boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 360, `the dialog fits: ${JSON.stringify(box)}`);
      for (const id of ['#view-edit', '#view-delete']) {
        const b = await page.locator(id).boundingBox();
        assert.ok(b.height >= 40, `${id} is a comfortable touch target (${b.height} px)`);
      }
      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });

  test('screenshot: the month view with demo data', { timeout: TEST_TIMEOUT }, async () => {
    const demo = await Api.login('demo', 'demo-password');
    // In UTC, where the demo's working hours are.
    const { context, page, problems } = await newPage(browser, { width: 1280, height: 900, timezoneId: 'UTC' });
    try {
      await signIn(page, demo);
      await poll(async () => (await page.locator('#calendar .fc-event').count()) > 20, { message: 'demo events' });
      mkdirSync(ARTIFACTS, { recursive: true });
      const shot = join(ARTIFACTS, 'month.png');
      await page.screenshot({ path: shot, fullPage: true });
      if (process.env.E2E_UPDATE_SCREENSHOT === '1') {
        mkdirSync(dirname(DOCS_SCREENSHOT), { recursive: true });
        copyFileSync(shot, DOCS_SCREENSHOT);
      }
      assertNoConsoleProblems(problems);
    } finally {
      await context.close();
    }
  });
});
