// calcache's calendar page: sign-in, a FullCalendar calendar fed by
// /api/calendar/feed, a details/edit/delete dialog, and optimistic delete.
//
// Freshness rules (the origin bug was deleted items coming back):
// - every feed request is `cache: 'no-store'` (the server also sends no-store);
// - every mutation refetches; a delete removes the event at once first;
// - a page restored from the back/forward cache refetches (`pageshow`).
(function () {
  'use strict';

  const WORK_TYPES = { project: 'Project', activity: 'Activity', task: 'Task' };
  const STATUSES = {
    not_started: 'Not started',
    in_progress: 'In progress',
    completed: 'Completed',
    cancelled: 'Cancelled',
  };
  // One colour per work type; white text on each passes WCAG AA.
  const COLORS = { project: '#1d4ed8', activity: '#047857', task: '#b45309' };
  // Every id form a client may hold for one work item.
  const ID_PREFIXES = ['work-item-', 'coordination-event-', 'staff-task-'];
  const NARROW = window.matchMedia('(max-width: 640px)');

  const $ = (id) => document.getElementById(id);

  const state = {
    me: null, // {id, username}
    users: [], // [{id, username}]
    calendar: null,
    // Deleted (or being deleted) work item ids: kept out of any feed
    // response that was already in flight when the delete began.
    deleted: new Set(),
    current: null, // the work item shown in the dialog
    editing: null, // the work item being edited (null: a new one)
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  // An ApiError from a failed response: the contract's
  // {"error": {"code", "message", "field"}} body, else the status line.
  async function errorFrom(res) {
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    const e = body && body.error ? body.error : {};
    const message = e.message || `${res.status} ${res.statusText || 'error'}`.trim();
    return new ApiError(res.status, e.code || 'http_error', message, e.field);
  }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'network', 'the server cannot be reached');
    }
    if (!res.ok) {
      throw await errorFrom(res);
    }
    return res.status === 204 ? null : res.json();
  }

  // ---------------------------------------------------------------- ids

  // The bare uuid of any id form.
  function rawId(id) {
    const s = String(id);
    const prefix = ID_PREFIXES.find((p) => s.startsWith(p));
    return prefix ? s.slice(prefix.length) : s;
  }

  // The calendar's event for a work item, whichever id form it was given.
  function findEvent(id) {
    if (!state.calendar) return null;
    const uuid = rawId(id);
    const ids = [uuid].concat(ID_PREFIXES.map((p) => p + uuid));
    return (
      state.calendar.getEvents().find((e) => ids.indexOf(e.id) !== -1 || e.extendedProps.workItemId === uuid) || null
    );
  }

  // ---------------------------------------------------------------- messages

  let noticeTimer = 0;

  function notice(text) {
    const el = $('notice');
    el.textContent = text;
    el.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      el.hidden = true;
    }, 4000);
  }

  function showError(text) {
    $('error-text').textContent = text;
    $('error').hidden = false;
  }

  function clearError() {
    $('error').hidden = true;
    $('error-text').textContent = '';
  }

  // ---------------------------------------------------------------- dates

  const pad = (n) => String(n).padStart(2, '0');
  const localDate = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const localDateTime = (d) => `${localDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  // All-day items are stored as UTC midnights with an exclusive end.
  const utcDate = (iso) => String(iso).slice(0, 10);
  function addDays(ymd, days) {
    const d = new Date(`${ymd}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }

  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function describeWhen(item) {
    if (item.all_day) {
      const first = utcDate(item.start);
      const last = item.end > item.start ? addDays(utcDate(item.end), -1) : first;
      const fmt = (ymd) => dateFmt.format(new Date(`${ymd}T12:00:00`));
      return first >= last ? `${fmt(first)} (all day)` : `${fmt(first)} – ${fmt(last)} (all day)`;
    }
    const start = new Date(item.start);
    const end = new Date(item.end);
    return end > start ? `${dateTimeFmt.format(start)} – ${dateTimeFmt.format(end)}` : dateTimeFmt.format(start);
  }

  // ---------------------------------------------------------------- views

  function showView(name) {
    $('loading').hidden = true;
    $('signin-view').hidden = name !== 'signin';
    $('calendar-view').hidden = name !== 'calendar';
    $('account').hidden = name !== 'calendar';
  }

  function showSignIn(message) {
    if (window.calcacheLive) window.calcacheLive.stop(); // live updates (assets/live.js)
    if (state.calendar) {
      state.calendar.destroy();
      state.calendar = null;
    }
    const dialog = $('item-dialog');
    if (dialog.open) dialog.close();
    state.me = null;
    clearError();
    showView('signin');
    $('signin-error').textContent = message || '';
    $('signin-password').value = '';
    $('signin-username').focus();
  }

  // A 401 anywhere means the session is gone (signed out elsewhere, expired).
  function handleAuthLoss(err) {
    if (err && err.status === 401) {
      showSignIn('Your session has ended. Please sign in again.');
      return true;
    }
    return false;
  }

  async function showCalendar(me) {
    state.me = me;
    $('account-name').textContent = me.username;
    showView('calendar');
    // Live updates (assets/live.js): subscribed before the first fetch.
    if (window.calcacheLive) {
      await window.calcacheLive.start({
        refetch,
        // Signed out elsewhere (another tab or device), or expired.
        ended: () => showSignIn('Your session has ended. Please sign in again.'),
      });
      if (state.me !== me) return; // signed out while waiting
    }
    if (!state.calendar) {
      state.calendar = createCalendar();
      state.calendar.render();
    } else {
      state.calendar.refetchEvents();
    }
    try {
      state.users = await api('GET', '/api/users');
    } catch (err) {
      if (!handleAuthLoss(err)) showError(`Could not load the user list: ${err.message}`);
    }
  }

  // ---------------------------------------------------------------- calendar

  // Options that follow the screen width: toolbars, and list-day headings
  // short enough for a phone.
  function responsiveOptions() {
    return NARROW.matches
      ? {
          headerToolbar: { left: 'prev,next', center: 'title', right: 'today' },
          footerToolbar: { center: 'dayGridMonth,timeGridWeek,timeGridDay,listWeek' },
          listDayFormat: { weekday: 'short', month: 'short', day: 'numeric' },
          listDaySideFormat: false,
        }
      : {
          headerToolbar: { left: 'prev,next today', center: 'title', right: 'dayGridMonth,timeGridWeek,timeGridDay,listWeek' },
          footerToolbar: false,
          listDayFormat: { weekday: 'long' },
          listDaySideFormat: { year: 'numeric', month: 'long', day: 'numeric' },
        };
  }

  // The events source: FullCalendar asks for a range, we fetch it fresh.
  function fetchFeed(info, success, failure) {
    if (window.calcacheLive) window.calcacheLive.feedStarted();
    const params = new URLSearchParams({ start: info.startStr, end: info.endStr });
    const type = $('filter-type').value;
    const status = $('filter-status').value;
    if (type) params.set('work_type', type);
    if (status) params.set('status', status);
    fetch(`/api/calendar/feed?${params}`, {
      cache: 'no-store',
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    })
      .then(async (res) => {
        if (!res.ok) throw await errorFrom(res);
        return res.json();
      })
      .then(
        (events) => success(events.filter((e) => !state.deleted.has(rawId((e.extendedProps && e.extendedProps.workItemId) || e.id)))),
        (err) => failure(err instanceof ApiError ? err : new ApiError(0, 'network', 'the server cannot be reached')),
      );
  }

  function createCalendar() {
    const options = Object.assign(responsiveOptions(), {
      initialView: NARROW.matches ? 'listWeek' : 'dayGridMonth', // a month grid is cramped on a phone
      height: 'auto',
      firstDay: 1,
      nowIndicator: true,
      // A busy day stays one cell high: three events and "+N more" (a
      // popover with the whole day). `dayMaxEvents: true` alone does nothing
      // with `height: 'auto'`, which grows the cells instead.
      dayMaxEventRows: 4,
      navLinks: true,
      selectable: true,
      selectMirror: true,
      eventInteractive: true, // events are focusable; Enter opens them
      buttonText: { today: 'Today', month: 'Month', week: 'Week', day: 'Day', list: 'List' },
      events: fetchFeed,
      lazyFetching: false, // every navigation and view change asks the server
      loading(isLoading) {
        $('calendar').setAttribute('aria-busy', String(isLoading));
      },
      eventSourceFailure(err) {
        if (!handleAuthLoss(err)) showError(`Could not load the calendar: ${err.message}`);
      },
      eventDataTransform(raw) {
        const props = raw.extendedProps || {};
        // All-day events arrive as dates (FullCalendar's form), timed ones
        // as instants: nothing to convert.
        return Object.assign({}, raw, {
          backgroundColor: COLORS[props.workType],
          borderColor: COLORS[props.workType],
          textColor: '#ffffff',
          classNames: [`wt-${props.workType}`, `st-${props.status}`],
        });
      },
      eventDidMount(info) {
        const props = info.event.extendedProps;
        info.el.dataset.workItemId = props.workItemId || rawId(info.event.id);
        info.el.setAttribute(
          'aria-label',
          `${info.event.title}, ${WORK_TYPES[props.workType] || props.workType}, ${STATUSES[props.status] || props.status}`,
        );
      },
      eventClick(info) {
        info.jsEvent.preventDefault();
        openDetails(info.event);
      },
      select(info) {
        state.calendar.unselect();
        openEditor(null, { start: info.start, end: info.end, allDay: info.allDay });
      },
    });
    return new FullCalendar.Calendar($('calendar'), options);
  }

  function refetch() {
    if (state.calendar) state.calendar.refetchEvents();
  }

  // ---------------------------------------------------------------- dialog

  const dialog = () => $('item-dialog');

  function dialogMode(mode) {
    $('dialog-view').hidden = mode !== 'view';
    $('dialog-edit').hidden = mode !== 'edit';
    $('dialog-confirm').hidden = mode !== 'confirm';
    const title = { view: 'dialog-title', edit: 'edit-title', confirm: 'confirm-title' }[mode];
    dialog().setAttribute('aria-labelledby', title);
    if (!dialog().open) dialog().showModal();
  }

  function userName(id) {
    if (state.me && id === state.me.id) return `${state.me.username} (you)`;
    const u = state.users.find((x) => x.id === id);
    return u ? u.username : `user #${id}`;
  }

  function fillDetails(item) {
    $('dialog-title').textContent = item.title;
    $('view-type').textContent = WORK_TYPES[item.work_type] || item.work_type;
    $('view-status').textContent = STATUSES[item.status] || item.status;
    $('view-when').textContent = describeWhen(item);
    $('view-assignees').textContent = item.assignee_ids && item.assignee_ids.length ? item.assignee_ids.map(userName).join(', ') : '—';
    $('view-owner').textContent = item.owner_id === undefined ? '…' : userName(item.owner_id);
    $('view-description').textContent = item.description === undefined ? '…' : item.description || '—';
  }

  // An event's date in the API's form (all-day dates are UTC midnights).
  const isoOf = (event, date, str) => (event.allDay ? `${str.slice(0, 10)}T00:00:00Z` : date.toISOString());

  // Details of a clicked event: shown at once from the event, completed
  // from GET /api/work-items/{id}; only the owner gets Edit and Delete.
  async function openDetails(event) {
    const id = event.extendedProps.workItemId || rawId(event.id);
    const props = event.extendedProps;
    const preview = {
      id,
      title: event.title,
      work_type: props.workType,
      status: props.status,
      all_day: event.allDay,
      start: isoOf(event, event.start, event.startStr),
      end: event.end ? isoOf(event, event.end, event.endStr) : isoOf(event, event.start, event.startStr),
    };
    state.current = preview;
    fillDetails(preview);
    $('view-error').textContent = '';
    $('view-edit').hidden = true;
    $('view-delete').hidden = true;
    dialogMode('view');
    $('dialog-title').focus();
    try {
      const item = await api('GET', `/api/work-items/${encodeURIComponent(id)}`);
      if (state.current !== preview) return; // the dialog moved on
      state.current = item;
      fillDetails(item);
      const mine = state.me && item.owner_id === state.me.id;
      $('view-edit').hidden = !mine;
      $('view-delete').hidden = !mine;
    } catch (err) {
      if (handleAuthLoss(err)) return;
      if (state.current !== preview) return;
      $('view-error').textContent =
        err.status === 404 ? 'This item no longer exists.' : `Could not load the details: ${err.message}`;
      if (err.status === 404) refetch();
    }
  }

  function setDateInputs(allDay, start, end) {
    const s = $('f-start');
    const e = $('f-end');
    s.type = allDay ? 'date' : 'datetime-local';
    e.type = allDay ? 'date' : 'datetime-local';
    s.value = start;
    e.value = end;
  }

  function fillAssignees(selected) {
    const box = $('f-assignees');
    box.querySelectorAll('label').forEach((l) => l.remove());
    const others = state.users.filter((u) => !state.me || u.id !== state.me.id);
    $('f-assignees-empty').hidden = others.length > 0;
    for (const u of others) {
      const label = document.createElement('label');
      label.className = 'check';
      const input = document.createElement('input');
      input.type = 'checkbox';
      input.name = 'assignee';
      input.value = String(u.id);
      input.checked = selected.indexOf(u.id) !== -1;
      label.append(input, ` ${u.username}`);
      box.append(label);
    }
  }

  // The create/edit form. `item` is null for a new one; `range` prefills
  // a new one from a selection ({start, end: exclusive, allDay}).
  function openEditor(item, range) {
    state.editing = item;
    $('edit-error').textContent = '';
    $('edit-title').textContent = item ? 'Edit item' : 'New item';
    $('f-title').value = item ? item.title : '';
    $('f-type').value = item ? item.work_type : $('filter-type').value || 'task';
    $('f-status').value = item ? item.status : 'not_started';
    $('f-description').value = item ? item.description || '' : '';
    let allDay;
    let start;
    let end;
    if (item) {
      allDay = item.all_day;
      if (allDay) {
        start = utcDate(item.start);
        end = item.end > item.start ? addDays(utcDate(item.end), -1) : start;
      } else {
        start = localDateTime(new Date(item.start));
        end = localDateTime(new Date(item.end));
      }
    } else {
      const r = range || { start: new Date(), allDay: true };
      allDay = r.allDay;
      if (allDay) {
        start = localDate(r.start);
        end = r.end ? addDays(localDate(r.end), -1) : start;
      } else {
        start = localDateTime(r.start);
        end = localDateTime(r.end || new Date(r.start.getTime() + 3600 * 1000));
      }
    }
    $('f-allday').checked = allDay;
    setDateInputs(allDay, start, end);
    fillAssignees(item ? item.assignee_ids || [] : []);
    dialogMode('edit');
    $('f-title').focus();
  }

  function onAllDayToggle() {
    const allDay = $('f-allday').checked;
    const s = $('f-start').value;
    const e = $('f-end').value;
    if (allDay) {
      setDateInputs(true, s.slice(0, 10), (e || s).slice(0, 10));
    } else {
      setDateInputs(false, s ? `${s.slice(0, 10)}T09:00` : '', e ? `${e.slice(0, 10)}T10:00` : '');
    }
  }

  // The form as the API's body, or throws an ApiError naming the field.
  function readForm() {
    const title = $('f-title').value.trim();
    if (!title) throw new ApiError(400, 'invalid_input', 'Title is required.', 'title');
    const allDay = $('f-allday').checked;
    const s = $('f-start').value;
    const e = $('f-end').value || s;
    if (!s) throw new ApiError(400, 'invalid_input', 'Start is required.', 'start');
    let start;
    let end;
    if (allDay) {
      start = `${s}T00:00:00Z`;
      end = `${addDays(e, 1)}T00:00:00Z`; // the form's end day is inclusive
    } else {
      start = new Date(s).toISOString();
      end = new Date(e).toISOString();
    }
    if (end < start) throw new ApiError(400, 'invalid_input', 'End must not be before start.', 'end');
    const assignees = Array.from($('f-assignees').querySelectorAll('input:checked')).map((i) => Number(i.value));
    return {
      title,
      work_type: $('f-type').value,
      status: $('f-status').value,
      all_day: allDay,
      start,
      end,
      description: $('f-description').value,
      assignee_ids: assignees,
    };
  }

  const FIELD_INPUTS = {
    title: 'f-title',
    work_type: 'f-type',
    status: 'f-status',
    start: 'f-start',
    end: 'f-end',
    all_day: 'f-allday',
    description: 'f-description',
  };

  async function onSave(ev) {
    ev.preventDefault();
    const save = $('edit-save');
    $('edit-error').textContent = '';
    try {
      const body = readForm();
      save.disabled = true;
      const editing = state.editing;
      const saved = editing
        ? await api('PATCH', `/api/work-items/${encodeURIComponent(editing.id)}`, body)
        : await api('POST', '/api/work-items', body);
      dialog().close();
      notice(editing ? `Saved “${saved.title}”.` : `Created “${saved.title}”.`);
      refetch();
    } catch (err) {
      if (handleAuthLoss(err)) return;
      $('edit-error').textContent = err.message;
      const input = err.field && $(FIELD_INPUTS[String(err.field).split('.')[0]]);
      if (input) input.focus();
    } finally {
      save.disabled = false;
    }
  }

  // ---------------------------------------------------------------- delete

  // Optimistic delete: the event goes at once; the server is asked next;
  // a failure puts the same event back and says why.
  async function deleteWorkItem(id, title) {
    const uuid = rawId(id);
    const event = findEvent(uuid);
    state.deleted.add(uuid);
    if (event) {
      event.remove();
    } else {
      refetch(); // nothing on screen to remove: show what the server has
    }
    try {
      await api('DELETE', `/api/work-items/${encodeURIComponent(uuid)}`);
      notice(`Deleted “${title}”.`);
      refetch();
    } catch (err) {
      state.deleted.delete(uuid);
      if (event && state.calendar && !findEvent(uuid)) {
        state.calendar.addEvent(event); // same event, same source: the next refetch replaces it
      }
      if (!handleAuthLoss(err)) showError(`Could not delete “${title}”: ${err.message}`);
    }
  }

  // ---------------------------------------------------------------- wiring

  async function signIn(ev) {
    ev.preventDefault();
    const username = $('signin-username').value.trim();
    const password = $('signin-password').value;
    const submit = $('signin-submit');
    $('signin-error').textContent = '';
    if (!username || !password) {
      $('signin-error').textContent = 'Enter your username and password.';
      (username ? $('signin-password') : $('signin-username')).focus();
      return;
    }
    submit.disabled = true;
    try {
      const res = await api('POST', '/api/login', { username, password });
      $('signin-password').value = '';
      await showCalendar(res.user);
    } catch (err) {
      $('signin-error').textContent = err.message;
      $('signin-password').focus();
    } finally {
      submit.disabled = false;
    }
  }

  async function signUp() {
    const username = $('signin-username').value.trim();
    const password = $('signin-password').value;
    $('signin-error').textContent = '';
    try {
      await api('POST', '/api/signup', { username, password });
      const res = await api('POST', '/api/login', { username, password });
      $('signin-password').value = '';
      await showCalendar(res.user);
    } catch (err) {
      $('signin-error').textContent = err.status === 403 || err.status === 404 ? 'Sign-up is switched off here.' : err.message;
    }
  }

  async function signOut() {
    try {
      await api('POST', '/api/logout');
    } catch (err) {
      if (err.status !== 401) {
        showError(`Could not sign out: ${err.message}`);
        return;
      }
    }
    showSignIn('You have signed out.');
  }

  function wire() {
    $('signin-form').addEventListener('submit', signIn);
    $('signup').addEventListener('click', signUp);
    $('signout').addEventListener('click', signOut);
    $('error-close').addEventListener('click', clearError);
    $('new-item').addEventListener('click', () => openEditor(null, null));
    $('filter-type').addEventListener('change', refetch);
    $('filter-status').addEventListener('change', refetch);

    dialog().addEventListener('click', (ev) => {
      if (ev.target instanceof HTMLElement && ev.target.hasAttribute('data-close')) dialog().close();
      if (ev.target === dialog()) dialog().close(); // a click on the backdrop
    });
    // Tab and Shift+Tab wrap around inside the dialog (the page behind it
    // is inert; without this the focus would wander off to the browser).
    dialog().addEventListener('keydown', (ev) => {
      if (ev.key !== 'Tab') return;
      const focusable = Array.from(
        dialog().querySelectorAll('button, input, select, textarea, [href], [tabindex]:not([tabindex="-1"])'),
      ).filter((el) => !el.disabled && el.getClientRects().length > 0);
      if (focusable.length === 0) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      const inside = focusable.indexOf(document.activeElement) !== -1;
      if (ev.shiftKey && (document.activeElement === first || !inside)) {
        ev.preventDefault();
        last.focus();
      } else if (!ev.shiftKey && (document.activeElement === last || !inside)) {
        ev.preventDefault();
        first.focus();
      }
    });
    dialog().addEventListener('close', () => {
      // `close` is dispatched as a task after the dialog closed: if the
      // dialog has been opened again meanwhile (Escape, then Enter on the
      // event at once), this state is the new opening's, not ours to clear.
      if (dialog().open) return;
      state.current = null;
      state.editing = null;
    });
    $('view-edit').addEventListener('click', () => openEditor(state.current, null));
    $('view-delete').addEventListener('click', () => {
      $('confirm-name').textContent = state.current ? state.current.title : '';
      dialogMode('confirm');
      $('confirm-cancel').focus();
    });
    $('confirm-cancel').addEventListener('click', () => {
      dialogMode('view');
      $('view-delete').focus();
    });
    $('confirm-delete').addEventListener('click', () => {
      const item = state.current;
      dialog().close();
      if (item) deleteWorkItem(item.id, item.title);
      $('calendar').focus();
    });
    $('dialog-edit').addEventListener('submit', onSave);
    $('edit-cancel').addEventListener('click', () => {
      if (state.editing) {
        const item = state.editing;
        state.current = item;
        fillDetails(item);
        dialogMode('view');
        $('view-edit').focus();
      } else {
        dialog().close();
      }
    });
    $('f-allday').addEventListener('change', onAllDayToggle);

    NARROW.addEventListener('change', () => {
      if (!state.calendar) return;
      const options = responsiveOptions();
      for (const name of Object.keys(options)) state.calendar.setOption(name, options[name]);
    });

    // Back/forward cache: the restored page still holds the events it had
    // when it was left; whatever changed since must be fetched again.
    window.addEventListener('pageshow', (ev) => {
      if (ev.persisted && state.calendar) refetch();
    });
  }

  async function start() {
    wire();
    $('calendar').tabIndex = -1;
    if (document.documentElement.dataset.session === 'signed-out') {
      showSignIn('');
      return;
    }
    try {
      await showCalendar(await api('GET', '/api/me'));
    } catch (err) {
      showSignIn(err.status === 401 ? '' : `The server cannot be reached: ${err.message}`);
    }
  }

  start();
})();
