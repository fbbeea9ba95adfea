// Live updates for calcache's calendar page: subscribes to
// /api/calendar/changes (Server-Sent Events) and asks the calendar to
// refetch its feed when told that the user's calendar changed. Events carry
// no item data: the feed stays the one source of what is shown.
//
// - `ready`: the stream is live (its id is the version the server knows).
// - `change`: refetch (debounced; a feed fetch that starts after the event
//   already reflects it, so it cancels the pending refetch).
// - `end`: the session is over; no reconnect.
// - The browser reconnects by itself after a dropped stream, sending
//   Last-Event-ID, and the server answers `change` if anything moved
//   meanwhile. When the browser gives up (an error answer: no replica, a
//   limit), this file reconnects with exponential backoff and jitter,
//   passing the last id as ?last_event_id=.
// - Without a stream the page works as before: every navigation refetches.
(function () {
  'use strict';

  const PATH = '/api/calendar/changes';
  const DEBOUNCE_MS = 150;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  // How long the first render waits for the stream to be live.
  const FIRST_READY_WAIT_MS = 1500;

  let source = null;
  let handlers = null; // {refetch, ended}
  let lastId = '';
  let attempts = 0;
  let retryTimer = null;
  let pending = null; // debounced refetch
  let readyWaiters = [];

  function indicator(mode) {
    const el = document.getElementById('live-status');
    if (!el) return;
    el.hidden = mode === 'off';
    el.dataset.state = mode;
    const text = { live: 'Live', reconnecting: 'Reconnecting…', off: '' }[mode];
    el.querySelector('.live-text').textContent = text;
    el.title =
      mode === 'live'
        ? 'Changes made elsewhere appear here by themselves'
        : 'Live updates are reconnecting; the calendar still refreshes when you navigate';
  }

  function settleReady() {
    const waiters = readyWaiters;
    readyWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function scheduleRefetch() {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => {
      pending = null;
      if (handlers) handlers.refetch();
    }, DEBOUNCE_MS);
  }

  function remember(ev) {
    if (ev.lastEventId) lastId = ev.lastEventId;
  }

  function connect() {
    retryTimer = null;
    const url = lastId ? `${PATH}?last_event_id=${encodeURIComponent(lastId)}` : PATH;
    const es = new EventSource(url, { withCredentials: true });
    source = es;
    es.addEventListener('ready', (ev) => {
      if (es !== source) return;
      remember(ev);
      attempts = 0;
      indicator('live');
      settleReady();
    });
    es.addEventListener('change', (ev) => {
      if (es !== source) return;
      remember(ev);
      attempts = 0;
      indicator('live');
      settleReady();
      scheduleRefetch();
    });
    es.addEventListener('end', (ev) => {
      if (es !== source) return;
      let reason = 'session_ended';
      try {
        reason = JSON.parse(ev.data).reason || reason;
      } catch (_) {
        // keep the default
      }
      const h = handlers;
      stop();
      if (h && h.ended) h.ended(reason);
    });
    es.addEventListener('error', () => {
      if (es !== source) return;
      settleReady(); // the first render waits no longer
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an error status): back off and try again.
        es.close();
        source = null;
        indicator('reconnecting');
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempts);
        attempts += 1;
        const delay = base / 2 + Math.random() * base;
        retryTimer = setTimeout(connect, delay);
      } else {
        // CONNECTING: the browser reconnects by itself.
        indicator('reconnecting');
      }
    });
  }

  // Starts the stream; resolves when it is live, failed, or after a short
  // wait, so that the calendar's first fetch starts after the subscription
  // (nothing committed in between can be missed).
  function start(h) {
    handlers = h;
    if (!source && !retryTimer) {
      if (typeof EventSource === 'undefined') return Promise.resolve();
      indicator('reconnecting');
      connect();
    }
    return new Promise((resolve) => {
      readyWaiters.push(resolve);
      setTimeout(resolve, FIRST_READY_WAIT_MS);
    });
  }

  function stop() {
    handlers = null;
    if (source) source.close();
    source = null;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    if (pending) clearTimeout(pending);
    pending = null;
    lastId = '';
    attempts = 0;
    settleReady();
    indicator('off');
  }

  // A feed fetch is starting: it reflects every change announced so far.
  function feedStarted() {
    if (pending) {
      clearTimeout(pending);
      pending = null;
    }
  }

  // Back/forward cache: a page put away closes its stream (keeping the
  // last id, and the page eligible for the cache); restored, it reconnects
  // with that id and is told to refetch if anything changed meanwhile.
  window.addEventListener('pagehide', (ev) => {
    if (!ev.persisted || !source) return;
    source.close();
    source = null;
  });
  window.addEventListener('pageshow', (ev) => {
    if (!ev.persisted || !handlers || source || retryTimer) return;
    indicator('reconnecting');
    connect();
  });

  window.calcacheLive = { start, stop, feedStarted };
})();
