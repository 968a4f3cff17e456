// berth dashboard: a small single-page app, no build step and no dependencies.
//
// Every page is a live view: the server computes it with the API and sends it again over
// server-sent events whenever it changes. Actions call the API through /ui/api, with the
// token of the HttpOnly session cookie, which this script never sees.
'use strict';

(function () {
  const API = '/ui/api/v1/cloud';
  const STATES = ['queued', 'starting', 'active', 'stopping', 'stopped'];
  const FILTERS = [
    ['', 'All states'],
    ['queued,starting,active,stopping', 'Live (not stopped)'],
    ...STATES.map((s) => [s, s[0].toUpperCase() + s.slice(1)]),
  ];
  // Outcomes, from the exit_code metadata that berth worker records when its handler ends.
  const OUTCOMES = [
    ['', 'All outcomes'],
    ['succeeded', 'Succeeded (exit 0)'],
    ['failed', 'Failed (non-zero exit)'],
    ['none', 'No exit code'],
  ];
  // The IDs the routes take: a prefix, "_" and 32 lowercase hex digits.
  const IDS = {
    env: { re: /^env_[0-9a-f]{32}$/, noun: 'environment', a: 'an', title: 'Environment' },
    work: { re: /^work_[0-9a-f]{32}$/, noun: 'work item', a: 'a', title: 'Work item' },
    sess: { re: /^sess_[0-9a-f]{32}$/, noun: 'session', a: 'a', title: 'Session' },
  };

  const $ = (id) => document.getElementById(id);
  const app = { role: null, route: null, es: null, evs: null, shell: null, retry: 0, evRetry: 0, pendingFocus: '' };

  // ---------------------------------------------------------------- DOM helpers

  // h builds an element: attrs sets text, class, on* listeners and attributes; children
  // may be nodes, strings, arrays or nothing. Text is always text: no HTML is parsed.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    add(el, kids);
    return el;
  }
  function add(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
  }
  function fill(el, ...kids) {
    el.replaceChildren();
    add(el, kids);
  }
  // keepFocus runs fn, which may rebuild part of the page, and gives the focus back to the
  // element of the same id if fn took it away.
  function keepFocus(fn) {
    const a = document.activeElement;
    const id = a && a !== document.body ? a.id : '';
    fn();
    if (id && document.activeElement !== a) {
      const el = $(id);
      if (el) el.focus({ preventScroll: true });
    }
  }
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  // ---------------------------------------------------------------- formatting

  // shortID shortens an ID to its prefix and last 8 digits; anything else is left whole.
  function shortID(id) {
    if (!/^[a-z]+_[0-9a-f]{32}$/.test(id)) return id;
    const i = id.indexOf('_');
    return id.slice(0, i + 1) + '…' + id.slice(-8);
  }
  function absTime(ts) {
    return new Date(ts).toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  }
  function duration(ms) {
    let s = Math.round(ms / 1000);
    if (s < 60) return s + 's';
    let m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return m + 'm ' + s + 's';
    let hr = Math.floor(m / 60);
    m %= 60;
    if (hr < 48) return hr + 'h ' + m + 'm';
    return Math.floor(hr / 24) + 'd ' + (hr % 24) + 'h';
  }
  function relTime(ts) {
    const diff = Date.now() - Date.parse(ts);
    if (Math.abs(diff) < 1500) return 'just now';
    return diff > 0 ? duration(diff) + ' ago' : 'in ' + duration(-diff);
  }
  // ago is a <time> that says how long ago (or how soon) ts is, kept current each second.
  function ago(ts) {
    if (!ts) return h('span', { class: 'muted' }, '—');
    return h('time', { datetime: ts, title: absTime(ts), class: 'rel', 'data-ts': ts }, relTime(ts));
  }
  // when is an absolute time followed by how long ago it was.
  function when(ts) {
    return h('span', {}, h('time', { datetime: ts }, absTime(ts)), ' · ',
      h('time', { datetime: ts, class: 'rel', 'data-ts': ts }, relTime(ts)));
  }
  setInterval(() => {
    for (const t of document.querySelectorAll('time.rel')) setText(t, relTime(t.dataset.ts));
  }, 1000);

  function badge(text, cls) {
    return h('span', { class: 'badge st-' + (cls || text) }, text);
  }
  function idLink(href, id, elID) {
    return h('a', { href, id: elID, class: 'id', title: id }, shortID(id));
  }
  function qs(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const s = q.toString();
    return s ? '?' + s : '';
  }
  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- server calls

  async function apiCall(method, path, body) {
    const init = { method, headers: {}, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(API + path, init);
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      if (res.status === 401) showSignIn('Your session ended. Sign in again.');
      const err = new Error((data && data.error && data.error.message) || 'Request failed (HTTP ' + res.status + ').');
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // ---------------------------------------------------------------- sign-in

  function showSignInError(msg) {
    const e = $('signin-error');
    e.textContent = msg;
    e.hidden = !msg;
    $('token').setAttribute('aria-invalid', msg ? 'true' : 'false');
  }

  function showSignIn(message) {
    closeStream();
    closeDialog();
    app.role = null;
    app.route = null;
    $('view').replaceChildren();
    for (const id of ['topnav', 'signout', 'who', 'live']) $(id).hidden = true;
    $('signin').hidden = false;
    document.title = 'Sign in · berth';
    showSignInError(message || '');
    $('token').focus();
  }

  function signedIn(me) {
    app.role = me.role;
    $('signin').hidden = true;
    showSignInError('');
    for (const id of ['topnav', 'signout', 'who', 'live']) $(id).hidden = false;
    $('who').textContent = 'Signed in as ' + me.role;
    route(true);
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('token');
    const token = input.value.trim();
    if (!token) {
      showSignInError('Enter a token.');
      input.focus();
      return;
    }
    const btn = $('signin-submit');
    btn.disabled = true;
    try {
      const res = await fetch('/ui/signin', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }),
      });
      let data = null;
      try { data = await res.json(); } catch (_) { /* not JSON */ }
      if (!res.ok) {
        showSignInError((data && data.error && data.error.message) || 'Sign-in failed (HTTP ' + res.status + ').');
        input.focus();
        input.select();
        return;
      }
      input.value = '';
      signedIn(data);
    } catch (_) {
      showSignInError('The server cannot be reached.');
    } finally {
      btn.disabled = false;
    }
  });

  $('signout').addEventListener('click', async () => {
    closeStream();
    try { await fetch('/ui/signout', { method: 'POST', credentials: 'same-origin' }); } catch (_) { /* signed out here anyway */ }
    showSignIn('');
  });

  // ---------------------------------------------------------------- live status and toasts

  function setLive(state) {
    const el = $('live');
    el.className = 'live ' + state;
    setText(el, { on: 'Live', off: 'Reconnecting…', wait: 'Connecting…', idle: '' }[state]);
  }

  let toastTimer = 0;
  function toast(msg) {
    setText($('toast'), msg);
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => setText($('toast'), ''), 6000);
  }

  // ---------------------------------------------------------------- dialog

  // A modal dialog that traps the focus, closes on Escape and gives the focus back to the
  // control that opened it. run does the action; an error it throws is shown in the dialog.
  // gen counts the dialogs opened: an action that ends after its dialog was closed by a
  // navigation, or replaced, leaves the dialog of now alone.
  const dlg = { opener: null, openerID: '', run: null, busy: false, gen: 0 };

  function openDialog(o) {
    const d = $('dialog');
    dlg.gen++;
    dlg.opener = document.activeElement;
    dlg.openerID = dlg.opener ? dlg.opener.id : '';
    dlg.run = o.run;
    dlg.busy = false;
    setText($('dialog-title'), o.title);
    fill($('dialog-body'), (o.body || []).map((t) => h('p', {}, t)));
    fill($('dialog-fields'), o.fields || []);
    const err = $('dialog-error');
    err.hidden = true;
    err.textContent = '';
    const ok = $('dialog-confirm');
    ok.textContent = o.confirm;
    ok.className = 'btn ' + (o.danger ? 'btn-danger' : 'btn-primary');
    ok.disabled = false;
    $('dialog-cancel').disabled = false;
    d.showModal();
    const first = d.querySelector('#dialog-fields input, #dialog-fields textarea, #dialog-fields select');
    (first || $('dialog-cancel')).focus();
  }

  function closeDialog() {
    const d = $('dialog');
    if (d.open) d.close();
  }

  // dropDialog closes the dialog for a navigation: its action was aimed at the page that
  // is gone, so it can no longer be confirmed, and the focus stays with the new page.
  function dropDialog() {
    dlg.gen++;
    dlg.run = null;
    dlg.busy = false;
    dlg.opener = null;
    dlg.openerID = '';
    closeDialog();
  }

  $('dialog').addEventListener('close', () => {
    // The close event comes after the dialog closed, as a task of its own: if the dialog
    // was opened again meanwhile, this one is stale.
    if ($('dialog').open) return;
    const back = dlg.opener && document.contains(dlg.opener) ? dlg.opener : (dlg.openerID && $(dlg.openerID));
    if (back) back.focus();
    dlg.opener = null;
    dlg.run = null;
  });
  $('dialog-cancel').addEventListener('click', closeDialog);
  $('dialog').addEventListener('keydown', (e) => {
    if (e.key !== 'Tab') return;
    const items = [...$('dialog').querySelectorAll('button, input, select, textarea, a[href]')]
      .filter((el) => !el.disabled && el.offsetParent !== null);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  });
  $('dialog-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!dlg.run || dlg.busy) return;
    const err = $('dialog-error');
    const gen = dlg.gen;
    dlg.busy = true;
    $('dialog-confirm').disabled = true;
    try {
      await dlg.run();
      if (dlg.gen === gen) closeDialog();
    } catch (ex) {
      if (dlg.gen !== gen) return;
      err.textContent = ex.message;
      err.hidden = false;
      $('dialog-confirm').disabled = false;
      $('dialog-confirm').focus();
    } finally {
      if (dlg.gen === gen) dlg.busy = false;
    }
  });

  function field(id, label, input, hint) {
    return h('div', { class: 'field' }, h('label', { for: id }, label), input,
      hint ? h('span', { class: 'muted small', id: id + '-hint' }, hint) : null);
  }

  // ---------------------------------------------------------------- routing

  // Routes: #/ · #/env/ENV[?state=&outcome=&before=&after=] · #/env/ENV/sessions[?before=&after=]
  // · #/env/ENV/webhooks
  // · #/env/ENV/work/WORK · #/session/SESS[?before=&after=]
  // A route whose ID is not one (#/env/env_nope) is the page "invalid", which says so.
  function parseRoute() {
    const r = matchRoute();
    const bad = (kind, v) => (IDS[kind].re.test(v) ? null : { name: 'invalid', kind, value: v, from: r });
    if (r.env !== undefined) return bad('env', r.env) || (r.name === 'item' && bad('work', r.id)) || r;
    if (r.name === 'session') return bad('sess', r.id) || r;
    return r;
  }
  function matchRoute() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const qi = raw.indexOf('?');
    const path = qi < 0 ? raw : raw.slice(0, qi);
    const q = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
    let parts;
    try { parts = path.split('/').filter(Boolean).map(decodeURIComponent); } catch (_) { parts = ['?']; }
    const cur = { before: q.get('before') || '', after: q.get('after') || '' };
    if (parts.length === 0) return { name: 'overview' };
    if (parts[0] === 'env' && parts.length === 2) {
      return { name: 'work', env: parts[1], state: q.get('state') || '', outcome: q.get('outcome') || '', ...cur };
    }
    if (parts[0] === 'env' && parts.length === 3 && parts[2] === 'sessions') return { name: 'sessions', env: parts[1], ...cur };
    if (parts[0] === 'env' && parts.length === 3 && parts[2] === 'webhooks') return { name: 'webhooks', env: parts[1] };
    if (parts[0] === 'env' && parts.length === 4 && parts[2] === 'work') return { name: 'item', env: parts[1], id: parts[3] };
    if (parts[0] === 'session' && parts.length === 2) return { name: 'session', id: parts[1], ...cur };
    return { name: 'notfound' };
  }

  const hrefs = {
    overview: () => '#/',
    work: (env, p) => '#/env/' + enc(env) + qs(p || {}),
    sessions: (env, p) => '#/env/' + enc(env) + '/sessions' + qs(p || {}),
    webhooks: (env) => '#/env/' + enc(env) + '/webhooks',
    item: (env, id) => '#/env/' + enc(env) + '/work/' + enc(id),
    session: (id, p) => '#/session/' + enc(id) + qs(p || {}),
  };

  function route(fresh) {
    if (app.role === null) return;
    const r = parseRoute();
    const prev = app.route;
    const page = pages[r.name] || pages.notfound;
    // The same live page with other filters or another cursor: the focus may stay.
    const samePage = !fresh && prev && page.update && prev.name === r.name && prev.env === r.env && prev.id === r.id;
    app.route = r;
    closeStream();
    dropDialog();
    const focused = document.activeElement && document.activeElement !== document.body ? document.activeElement.id : '';
    keepFocus(() => {
      app.shell = page.shell(r);
      $('view').replaceChildren(app.shell.root);
    });
    // A control of the same page that is drawn only with the data (a pager link) gets the
    // focus back when the first view arrives.
    app.pendingFocus = samePage && focused && !$(focused) ? focused : '';
    if (!samePage) {
      setText($('toast'), '');
      const title = $('page-title');
      if (title) title.focus({ preventScroll: false });
      window.scrollTo(0, 0);
    }
    document.title = page.title(r) + ' · berth';
    if (page.update) openStream(r, page);
    else setLive('idle');
    if (page.live && page.live(r)) openEvents(r, app.shell);
  }
  window.addEventListener('hashchange', () => route(false));

  function closeStream() {
    if (app.es) app.es.close();
    app.es = null;
    clearTimeout(app.retry);
    closeEvents();
  }

  function closeEvents() {
    if (app.evs) app.evs.close();
    app.evs = null;
    clearTimeout(app.evRetry);
  }

  function streamQuery(r) {
    const p = { view: r.name };
    for (const k of ['env', 'id', 'state', 'outcome', 'before', 'after']) if (r[k]) p[k] = r[k];
    return new URLSearchParams(p).toString();
  }

  function openStream(r, page) {
    const es = new EventSource('/ui/stream?' + streamQuery(r));
    app.es = es;
    setLive('wait');
    es.addEventListener('view', (ev) => {
      if (app.es !== es) return;
      setLive('on');
      let v;
      try { v = JSON.parse(ev.data); } catch (_) { return; }
      if (v.error && v.error.status === 401) {
        showSignIn('Your session ended: the token is no longer valid. Sign in again.');
        return;
      }
      if (v.error && permanent(v.error.status)) {
        showViewError(r, v.error);
        return;
      }
      keepFocus(() => page.update(app.shell, v, r));
      if (app.pendingFocus) {
        const el = $(app.pendingFocus);
        app.pendingFocus = '';
        if (el && el.tabIndex >= 0) el.focus({ preventScroll: true });
        else $('page-title').focus({ preventScroll: true });
      }
    });
    es.addEventListener('open', () => { if (app.es === es) setLive('on'); });
    es.addEventListener('error', async () => {
      if (app.es !== es) return;
      setLive('off');
      if (es.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // The server refused the stream, and EventSource does not say why: ask for the view
      // once. A session that ended signs in again, an error that asking again will not
      // change (a bad cursor in the address) is shown, and anything else (the server is
      // down or restarting) is tried again soon.
      let status = 0;
      let data = null;
      try {
        const res = await fetch('/ui/view?' + streamQuery(r), { credentials: 'same-origin' });
        status = res.status;
        try { data = await res.json(); } catch (_) { /* not JSON */ }
      } catch (_) { /* offline */ }
      if (app.es !== es) return;
      if (status === 401) {
        showSignIn('Your session ended. Sign in again.');
        return;
      }
      if (permanent(status)) {
        showViewError(r, errorOf(status, data));
        return;
      }
      app.retry = setTimeout(() => { if (app.es === es) openStream(r, page); }, 3000);
    });
  }

  // permanent tells an error that asking again will not change: a client error other than
  // 401 (sign in again), 408 and 429. The server ends a stream on such an error too.
  function permanent(status) {
    return status >= 400 && status < 500 && status !== 401 && status !== 408 && status !== 429;
  }

  // errorOf reads an error answer: a view's {error: {status, type, message, resource}} or
  // the envelope {type: "error", error: {type, message}}.
  function errorOf(status, data) {
    const e = (data && data.error) || {};
    return {
      status: e.status || status, type: e.type || '', resource: e.resource || '',
      message: e.message || 'The server answered HTTP ' + status + '.',
    };
  }

  // showViewError replaces the page with an error that asking again will not change, and
  // stops the live view: nothing is left to reconnect.
  function showViewError(r, e) {
    closeStream();
    setLive('idle');
    const kind = { environment: 'env', work: 'work', session: 'sess' }[e.resource];
    let title = 'Cannot show this page';
    let message = e.message;
    if (e.status === 404) {
      title = kind ? IDS[kind].title + ' not found' : 'Not found';
      const id = kind === 'env' ? r.env : r.id;
      if (kind && id) message = 'No ' + IDS[kind].noun + ' has the ID ' + id + ': it does not exist, or it was deleted.';
    } else if (e.status === 403) {
      title = 'Not allowed';
    } else if (e.status === 400) {
      title = 'Invalid address';
    }
    app.shell = errorShell(r, title, message, kind);
    $('view').replaceChildren(app.shell.root);
    document.title = title + ' · berth';
    $('page-title').focus({ preventScroll: true });
  }

  // errorShell is a page that says what went wrong, and the ways back: to the environments,
  // and to the environment of the route unless the environment is what failed.
  function errorShell(r, title, message, failed) {
    const env = r.env && IDS.env.re.test(r.env) && failed !== 'env' ? r.env : '';
    return {
      root: h('div', { id: 'error-page' },
        crumbs(h('a', { href: '#/' }, 'Environments'), h('span', {}, title)),
        h('div', { class: 'head' }, h('div', { class: 'head-title' }, pageTitle(title))),
        h('div', { class: 'banner err', role: 'alert', id: 'error-message' }, message),
        h('p', { class: 'btn-row' },
          h('a', { href: '#/', id: 'error-back', class: 'btn' }, 'Back to environments'),
          env ? h('a', { href: hrefs.work(env), id: 'error-env', class: 'btn' }, 'Back to environment ' + shortID(env)) : null)),
    };
  }

  // ---------------------------------------------------------------- shared page parts

  function crumbs(...items) {
    const nav = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' });
    items.forEach((it, i) => {
      if (i > 0) nav.append(h('span', { 'aria-hidden': 'true' }, '/'));
      nav.append(it);
    });
    return nav;
  }
  function pageTitle(...kids) {
    return h('h1', { id: 'page-title', tabindex: '-1' }, kids);
  }
  function loading() {
    return h('div', { class: 'panel empty' }, 'Loading…');
  }
  function errorBanner(e) {
    return h('div', { class: 'banner err', role: 'alert' }, e.message,
      e.status === 404 ? h('span', {}, ' ', h('a', { href: '#/' }, 'Back to environments')) : null);
  }
  function table(caption, columns, rows, empty) {
    if (!rows.length) return h('div', { class: 'panel empty' }, empty);
    return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': caption },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
      h('tbody', {}, rows)));
  }
  function cell(label, content, cls) {
    return h('td', { 'data-label': label, class: cls || null }, content);
  }
  function envName(env) {
    return env ? env.name : '';
  }

  // pager links the pages of a list shown newest first (or oldest first when ascending is
  // set). API pages are ascending: before=X is the page just before X (the newest page
  // has no cursor), after=X the page just after it.
  function pager(r, page, hrefFor, noun, ascending) {
    const data = page.data || [];
    const newest = !r.before && !r.after;
    let older = null;
    let newer = null;
    // first_id and last_id bound what the page covers: a filtered page may cover items
    // it does not show, even none.
    if (r.after) {
      if (page.first_id) older = hrefFor({ before: page.first_id });
      if (page.has_more && page.last_id) newer = hrefFor({ after: page.last_id });
    } else {
      if (page.has_more && page.first_id) older = hrefFor({ before: page.first_id });
      if (!newest && page.last_id) newer = hrefFor({ after: page.last_id });
    }
    const link = (href, id, text) => href
      ? h('a', { href, id }, text)
      : h('span', { class: 'disabled', 'aria-disabled': 'true' }, text);
    const count = data.length + ' ' + noun + (data.length === 1 ? '' : 's') +
      (newest ? (ascending ? ', the latest' : ', newest first') : '');
    const links = ascending
      ? [link(older, 'page-older', '← Older'), link(newer, 'page-newer', 'Newer →')]
      : [link(newer, 'page-newer', '← Newer'), link(older, 'page-older', 'Older →')];
    return h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('span', { class: 'count' }, count),
      link(newest ? null : hrefFor({}), 'page-newest', 'Latest'), links);
  }

  function statCards(el, stats) {
    const ok = stats && !stats.error;
    const v = (k) => (ok ? String(stats[k]) : '—');
    fill(el,
      h('div', { class: 'stat' }, h('dt', {}, 'Depth'), h('dd', { id: 'stat-depth' }, v('depth'))),
      h('div', { class: 'stat' }, h('dt', {}, 'Pending'), h('dd', { id: 'stat-pending' }, v('pending'))),
      h('div', { class: 'stat' }, h('dt', {}, 'Oldest queued'),
        h('dd', { class: 'small-value', id: 'stat-oldest' }, ok ? ago(stats.oldest_queued_at) : '—')),
      h('div', { class: 'stat' }, h('dt', {}, 'Workers polling'), h('dd', { id: 'stat-workers' }, v('workers_polling'))));
  }

  function envHeader(r, tab) {
    const title = pageTitle(h('span', { id: 'env-name' }, shortID(r.env)));
    const s = {
      title,
      crumbName: h('span', { id: 'crumb-env' }, shortID(r.env)),
      sub: h('p', { class: 'sub', id: 'env-sub' }, h('span', { class: 'id' }, r.env)),
      stats: h('dl', { class: 'stats', id: 'stats', 'aria-label': 'Queue statistics' }),
      newSession: h('button', { type: 'button', class: 'btn btn-primary', id: 'new-session', onclick: () => createSession(r.env) }, 'New session…'),
    };
    statCards(s.stats, null);
    s.head = [
      crumbs(h('a', { href: '#/' }, 'Environments'), s.crumbName),
      h('div', { class: 'head' }, h('div', { class: 'head-title' }, title), h('div', { class: 'btn-row' }, s.newSession)),
      s.sub,
      s.stats,
      h('nav', { class: 'tabs', 'aria-label': 'Environment' },
        h('a', { href: hrefs.work(r.env), id: 'tab-work', 'aria-current': tab === 'work' ? 'page' : null }, 'Work items'),
        h('a', { href: hrefs.sessions(r.env), id: 'tab-sessions', 'aria-current': tab === 'sessions' ? 'page' : null }, 'Sessions'),
        h('a', { href: hrefs.webhooks(r.env), id: 'tab-webhooks', 'aria-current': tab === 'webhooks' ? 'page' : null }, 'Webhooks')),
    ];
    return s;
  }

  function updateEnvHeader(s, env, stats) {
    setText(s.title.firstChild, env.name);
    setText(s.crumbName, env.name);
    document.title = env.name + ' · berth';
    fill(s.sub, h('span', { class: 'id' }, env.id), ' ', badge(env.config.type),
      env.archived_at ? [' ', badge('archived')] : null,
      env.description ? [' · ', env.description] : null);
    statCards(s.stats, stats);
  }

  // ---------------------------------------------------------------- actions

  function createSession(env) {
    const agent = h('input', { id: 'f-agent', name: 'agent', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'agent_…', 'aria-describedby': 'f-agent-hint' });
    const title = h('input', { id: 'f-title', name: 'title', autocomplete: 'off' });
    const message = h('textarea', { id: 'f-message', name: 'message', rows: '3' });
    openDialog({
      title: 'New session',
      body: ['A session in a self_hosted environment queues a work item for a worker to run.'],
      fields: [
        field('f-agent', 'Agent', agent, 'The agent ID the session runs, e.g. agent_demo.'),
        field('f-title', 'Title (optional)', title),
        field('f-message', 'First message (optional)', message),
      ],
      confirm: 'Create session',
      run: async () => {
        const a = agent.value.trim();
        if (!a) {
          agent.focus();
          throw new Error('Enter an agent ID.');
        }
        const body = { agent: a, environment_id: env };
        if (title.value.trim()) body.title = title.value.trim();
        if (message.value.trim()) body.initial_events = [{ type: 'user.message', content: [{ type: 'text', text: message.value.trim() }] }];
        const s = await apiCall('POST', '/sessions', body);
        toast('Session ' + shortID(s.id) + ' created.');
      },
    });
  }

  function stopItem(r, force) {
    openDialog({
      title: force ? 'Force stop this work item?' : 'Stop this work item gracefully?',
      body: [
        force
          ? 'The item becomes stopped at once. Its worker learns of it at its next heartbeat and must abandon the work.'
          : 'The worker is asked to drain and then confirm: the item becomes stopping. An item not yet acknowledged, or already stopping, becomes stopped at once.',
        h('code', { class: 'id' }, r.id),
      ],
      confirm: force ? 'Force stop' : 'Stop gracefully',
      danger: force,
      run: async () => {
        const w = await apiCall('POST', '/environments/' + enc(r.env) + '/work/' + enc(r.id) + '/stop', { force });
        toast('Work item ' + shortID(w.id) + ' is ' + w.state + '.');
      },
    });
  }

  // setEnabled keeps a control focusable while it cannot be used, so that a live update
  // never drops the keyboard focus.
  function setEnabled(btn, on) {
    btn.setAttribute('aria-disabled', on ? 'false' : 'true');
  }
  function guarded(fn) {
    return (e) => {
      if (e.currentTarget.getAttribute('aria-disabled') === 'true') return;
      fn();
    };
  }

  // ---------------------------------------------------------------- pages

  const pages = {};

  pages.overview = {
    title: () => 'Environments',
    shell() {
      const body = h('div', { id: 'ov-body' }, loading());
      return {
        body,
        root: h('div', {},
          h('div', { class: 'head' }, h('div', {}, pageTitle('Environments'),
            h('p', { class: 'sub' }, 'Every environment and its work queue, live.'))),
          body),
      };
    },
    update(s, v) {
      if (v.error) return fill(s.body, errorBanner(v.error));
      const envs = v.environments.data;
      const rows = envs.map((e) => {
        const st = v.stats[e.id];
        const ok = st && !st.error;
        const num = (k) => (ok ? String(st[k]) : '—');
        return h('tr', { id: 'env-' + e.id },
          cell('Environment', [h('a', { href: hrefs.work(e.id), id: 'link-' + e.id }, e.name),
            h('div', { class: 'id muted' }, e.id)], 'primary'),
          cell('Type', [badge(e.config.type), e.archived_at ? [' ', badge('archived')] : null]),
          cell('Depth', num('depth'), 'num stat-depth'),
          cell('Pending', num('pending'), 'num stat-pending'),
          cell('Oldest queued', ok ? ago(st.oldest_queued_at) : '—', 'num'),
          cell('Workers polling', num('workers_polling'), 'num stat-workers'));
      });
      fill(s.body,
        table('Environments', [{ label: 'Environment' }, { label: 'Type' }, { label: 'Depth', num: true },
          { label: 'Pending', num: true }, { label: 'Oldest queued', num: true }, { label: 'Workers polling', num: true }],
        rows, 'No environments yet. Create one with the API (POST /environments) or berth env create.'),
        v.environments.has_more ? h('p', { class: 'muted small' }, 'Showing the first ' + envs.length + ' environments.') : null);
    },
  };

  // outcomeBadge shows an item's exit code: "exit 0" (succeeded), "exit 3" (failed), or a
  // dash while it has none.
  function outcomeBadge(row) {
    if (!row || row.exit_code === null || row.exit_code === undefined) return h('span', { class: 'muted' }, '—');
    return badge('exit ' + row.exit_code, row.outcome);
  }

  pages.work = {
    title: (r) => shortID(r.env),
    shell(r) {
      const s = envHeader(r, 'work');
      const select = (id, name, options, value) => h('select', { id, name },
        options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
      s.filter = select('state-filter', 'state', FILTERS, r.state);
      s.outcome = select('outcome-filter', 'outcome', OUTCOMES, r.outcome);
      // A filter starts again from the newest page, and keeps the other filter.
      const go = () => { location.hash = hrefs.work(r.env, { state: s.filter.value, outcome: s.outcome.value }); };
      s.filter.addEventListener('change', go);
      s.outcome.addEventListener('change', go);
      s.body = h('div', { id: 'work-body' }, loading());
      s.pager = h('div', {});
      s.root = h('div', {}, s.head,
        h('div', { class: 'toolbar' }, h('div', { class: 'filters' },
          field('state-filter', 'State', s.filter), field('outcome-filter', 'Outcome', s.outcome))),
        s.body, s.pager);
      return s;
    },
    update(s, v, r) {
      if (v.error) return fill(s.body, errorBanner(v.error));
      updateEnvHeader(s, v.environment, v.stats);
      if (v.work.error) {
        fill(s.pager);
        return fill(s.body, h('div', { class: 'panel empty' }, v.work.error.message));
      }
      const items = [...v.work.data].reverse();
      const extra = v.rows || {};
      const rows = items.map((w) => {
        const x = extra[w.id] || {};
        return h('tr', { id: 'row-' + w.id, 'data-state': w.state, 'data-outcome': x.outcome || '' },
          cell('Work item', idLink(hrefs.item(r.env, w.id), w.id, 'link-' + w.id), 'primary'),
          cell('State', badge(w.state)),
          cell('Outcome', outcomeBadge(x), 'outcome'),
          cell('Session', h('div', {}, x.session_title ? h('div', { class: 'title' }, x.session_title) : null,
            idLink(hrefs.session(w.data.id), w.data.id)), 'session'),
          cell('Worker', x.worker ? h('span', { class: 'mono' }, x.worker) : h('span', { class: 'muted' }, '—'), 'worker'),
          cell('Created', ago(w.created_at)),
          cell('Last heartbeat', ago(w.latest_heartbeat_at)));
      });
      const filtered = r.state || r.outcome;
      fill(s.body, table('Work items', [{ label: 'Work item' }, { label: 'State' }, { label: 'Outcome' },
        { label: 'Session' }, { label: 'Worker' }, { label: 'Created' }, { label: 'Last heartbeat' }], rows,
      filtered ? 'No work items match these filters' + (r.before || r.after ? ' on this page.' : '.')
        : 'No work items yet. Create a session to queue one.'),
      // An outcome filter reads a bounded number of items at a time: say so when it
      // stopped short of a full page.
      r.outcome && v.work.has_more && v.work.data.length < 20
        ? h('p', { class: 'muted small', id: 'scan-note' }, 'Searched ' + v.scanned + ' work items for this page; ' +
          (r.after ? '← Newer' : 'Older →') + ' searches further.')
        : null);
      fill(s.pager, pager(r, v.work, (c) => hrefs.work(r.env, { state: r.state, outcome: r.outcome, ...c }), 'item'));
    },
  };

  pages.sessions = {
    title: (r) => shortID(r.env),
    shell(r) {
      const s = envHeader(r, 'sessions');
      s.body = h('div', { id: 'sessions-body' }, loading());
      s.pager = h('div', {});
      s.root = h('div', {}, s.head, s.body, s.pager);
      return s;
    },
    update(s, v, r) {
      if (v.error) return fill(s.body, errorBanner(v.error));
      updateEnvHeader(s, v.environment, v.stats);
      if (v.sessions.error) return fill(s.body, errorBanner(v.sessions.error));
      const rows = [...v.sessions.data].reverse().map((x) => h('tr', { id: 'row-' + x.id },
        cell('Session', idLink(hrefs.session(x.id), x.id, 'link-' + x.id), 'primary'),
        cell('Title', x.title || h('span', { class: 'muted' }, '—')),
        cell('Status', [badge(x.status), x.archived_at ? [' ', badge('archived')] : null]),
        cell('Agent', h('span', { class: 'id' }, x.agent && x.agent.id ? x.agent.id : '')),
        cell('Created', ago(x.created_at))));
      fill(s.body, table('Sessions', [{ label: 'Session' }, { label: 'Title' }, { label: 'Status' },
        { label: 'Agent' }, { label: 'Created' }], rows, 'No sessions yet.'));
      fill(s.pager, pager(r, v.sessions, (c) => hrefs.sessions(r.env, c), 'session'));
    },
  };

  // A delivery's outcome, as a badge: delivered, pending (retrying) or given up.
  function deliveryBadge(d) {
    if (d.delivered_at) return badge('delivered', 'active');
    if (d.next_attempt_at) return badge(d.attempts ? 'retrying' : 'pending', d.attempts ? 'stopping' : 'queued');
    return badge('given up', 'failed');
  }

  pages.webhooks = {
    title: (r) => shortID(r.env),
    shell(r) {
      const s = envHeader(r, 'webhooks');
      s.body = h('div', { id: 'webhooks-body' }, loading());
      s.root = h('div', {}, s.head, s.body);
      return s;
    },
    update(s, v, r) {
      if (v.error) return fill(s.body, errorBanner(v.error));
      updateEnvHeader(s, v.environment, v.stats);
      if (v.webhooks.error) return fill(s.body, errorBanner(v.webhooks.error));
      if (v.webhooks.data.length === 0) {
        return fill(s.body, h('p', { class: 'muted', id: 'no-webhooks' },
          'No webhooks. berth webhook create ' + r.env + ' --url https://… adds one.'));
      }
      fill(s.body, v.webhooks.data.map((w) => {
        const ds = v.deliveries[w.id];
        let body;
        if (!ds || ds.error) body = errorBanner(ds ? ds.error : { message: 'No deliveries.' });
        else {
          const rows = [...ds.data].reverse().map((d) => h('tr', { id: 'row-' + d.id },
            cell('Delivery', h('span', { class: 'id' }, d.id), 'primary'),
            cell('Work item', idLink(hrefs.item(r.env, d.event.work_id), d.event.work_id)),
            cell('Outcome', deliveryBadge(d)),
            cell('Attempts', String(d.attempts)),
            cell('Last status', d.last_status === null ? h('span', { class: 'muted' }, '—') : String(d.last_status)),
            cell('Last error', d.last_error || h('span', { class: 'muted' }, '—')),
            cell('Next attempt', d.next_attempt_at ? when(d.next_attempt_at) : h('span', { class: 'muted' }, '—')),
            cell('Created', ago(d.created_at))));
          body = table('Newest deliveries of ' + w.url, [{ label: 'Delivery' }, { label: 'Work item' }, { label: 'Outcome' },
            { label: 'Attempts' }, { label: 'Last status' }, { label: 'Last error' }, { label: 'Next attempt' },
            { label: 'Created' }], rows, 'No deliveries yet: one is made for every work item queued from now on.');
        }
        return h('section', { class: 'webhook', id: 'webhook-' + w.id },
          h('h2', {}, w.url),
          h('p', { class: 'sub' }, h('span', { class: 'id' }, w.id), w.description ? [' · ', w.description] : null,
            ' · created ', ago(w.created_at)),
          body);
      }));
    },
  };

  pages.item = {
    title: (r) => shortID(r.id),
    shell(r) {
      const s = {};
      s.crumbEnv = h('a', { href: hrefs.work(r.env), id: 'crumb-env' }, shortID(r.env));
      s.state = h('span', { class: 'badge big', id: 'item-state' }, '…');
      s.stop = h('button', { type: 'button', class: 'btn', id: 'stop-graceful', 'aria-disabled': 'true', onclick: guarded(() => stopItem(r, false)) }, 'Stop gracefully…');
      s.force = h('button', { type: 'button', class: 'btn btn-danger', id: 'stop-force', 'aria-disabled': 'true', onclick: guarded(() => stopItem(r, true)) }, 'Force stop…');
      s.timeline = h('ol', { class: 'timeline', id: 'timeline' });
      s.details = h('dl', { class: 'kv', id: 'details' });
      s.meta = h('div', { id: 'metadata' });
      s.body = h('div', {}, h('div', { class: 'grid-2' },
        h('section', { class: 'panel', 'aria-labelledby': 'h-timeline' }, h('h2', { id: 'h-timeline' }, 'Timeline'), s.timeline),
        h('div', {},
          h('section', { class: 'panel', 'aria-labelledby': 'h-details' }, h('h2', { id: 'h-details' }, 'Details'), s.details),
          h('section', { class: 'panel', 'aria-labelledby': 'h-meta' }, h('h2', { id: 'h-meta' }, 'Metadata'), s.meta))));
      s.banner = h('div', {});
      s.root = h('div', {},
        crumbs(h('a', { href: '#/' }, 'Environments'), s.crumbEnv, h('span', {}, 'Work item')),
        h('div', { class: 'head' },
          h('div', { class: 'head-title' }, pageTitle('Work item ', h('span', { class: 'id' }, r.id)), s.state),
          h('div', { class: 'btn-row' }, s.stop, s.force)),
        s.banner, s.body);
      return s;
    },
    update(s, v, r) {
      if (v.error) {
        fill(s.banner, errorBanner(v.error));
        s.body.hidden = true;
        return;
      }
      fill(s.banner);
      s.body.hidden = false;
      const w = v.work;
      const d = v.delivery;
      setText(s.crumbEnv, envName(v.environment));
      setText(s.state, w.state);
      s.state.className = 'badge big st-' + w.state;
      setEnabled(s.stop, w.state !== 'stopped');
      setEnabled(s.force, w.state !== 'stopped');

      const leased = w.state === 'starting' || w.state === 'active' || w.state === 'stopping';
      const step = (key, what, ts, detail, cls) => h('li', { id: 'tl-' + key, class: ts ? (cls || 'done') : 'pending' },
        h('div', { class: 'what' }, what),
        ts ? h('div', { class: 'when' }, when(ts)) : null,
        detail ? h('div', { class: 'detail' }, detail) : null);
      const deliveries = d.deliveries === 1 ? '1 delivery' : d.deliveries + ' deliveries';
      fill(s.timeline,
        step('created', 'Created', w.created_at),
        step('delivered', d.deliveries ? 'Delivered to ' + (d.delivered_to || 'a worker without Worker-ID') : 'Not delivered yet',
          d.delivered_at, d.deliveries ? deliveries : null),
        step('acknowledged', w.acknowledged_at ? 'Acknowledged' + (d.acked_by ? ' by ' + d.acked_by : '') : 'Not acknowledged',
          w.acknowledged_at),
        step('started', w.started_at ? 'Started (first heartbeat)' : 'Not started', w.started_at),
        step('heartbeat', w.latest_heartbeat_at ? 'Latest heartbeat' : 'No heartbeat', w.latest_heartbeat_at,
          leased && d.lease_expires_at ? ['Lease expires ', ago(d.lease_expires_at), ' (TTL ' + d.ttl_seconds + 's)'] : null),
        step('stop-requested', w.stop_requested_at ? 'Stop requested' : 'No stop requested', w.stop_requested_at, null, 'warn'),
        step('stopped', w.stopped_at ? 'Stopped' : 'Not stopped', w.stopped_at, null, 'end'));

      const kv = (k, val) => [h('dt', {}, k), h('dd', {}, val)];
      fill(s.details,
        kv('State', badge(w.state)),
        kv('Session', h('a', { href: hrefs.session(w.data.id), id: 'item-session', class: 'id' }, w.data.id)),
        kv('Environment', h('a', { href: hrefs.work(r.env) }, envName(v.environment) || r.env)),
        kv('Delivered to', d.delivered_to || h('span', { class: 'muted' }, '—')),
        kv('Deliveries', String(d.deliveries)),
        kv('Acknowledged by', d.acked_by || h('span', { class: 'muted' }, '—')),
        kv('Lease expires', leased && d.lease_expires_at ? ago(d.lease_expires_at) : h('span', { class: 'muted' }, '—')));

      const keys = Object.keys(w.metadata || {}).sort();
      fill(s.meta, keys.length
        ? h('dl', { class: 'kv' }, keys.map((k) => [h('dt', { class: 'mono' }, k), h('dd', {}, w.metadata[k])]))
        : h('p', { class: 'muted' }, 'No metadata.'));
    },
  };

  // eventText finds the words of an event: a text field, or the text blocks of content.
  function eventText(e) {
    if (typeof e.text === 'string') return e.text;
    if (typeof e.content === 'string') return e.content;
    if (Array.isArray(e.content)) {
      return e.content.filter((b) => b && typeof b.text === 'string').map((b) => b.text).join('\n');
    }
    return '';
  }

  // eventBody is what a person reads of an event: the words of a message, the tool and
  // its input of a tool use, the result of a tool, the status a session went to.
  function eventBody(e) {
    const text = eventText(e);
    const para = (t, cls) => h('p', { class: 'ev-text' + (cls ? ' ' + cls : '') }, t);
    switch (e.type) {
      case 'agent.tool_use':
      case 'agent.custom_tool_use':
        return [para(['Tool ', h('code', { class: 'ev-tool' }, String(e.name || ''))]),
          e.input !== undefined ? h('pre', { class: 'ev-input' }, JSON.stringify(e.input, null, 2)) : null];
      case 'user.tool_result':
      case 'user.custom_tool_result': {
        const use = e.tool_use_id || e.custom_tool_use_id;
        return [para(['Result', use ? [' for ', h('code', { class: 'id', title: use }, shortID(use))] : null,
          e.is_error ? [' ', badge('error', 'failed')] : null]), text ? para(text) : null];
      }
      case 'session.status_running':
        return para(['Session is ', badge('running')], 'ev-status');
      case 'session.status_idle':
        return para(['Session is ', badge('idle'),
          e.stop_reason && e.stop_reason.type ? ' (' + e.stop_reason.type + ')' : null], 'ev-status');
      case 'session.deleted':
        return para('The session was deleted.', 'ev-status');
      case 'user.interrupt':
        return para('Interrupt.', 'ev-status');
      default:
        return text ? para(text) : null;
    }
  }

  function eventItem(e) {
    return h('li', { id: 'ev-' + e.id, 'data-type': e.type, class: e.type.startsWith('session.') ? 'ev-session' : null },
      h('div', { class: 'ev-head' }, h('span', { class: 'ev-type' }, e.type), when(e.created_at)),
      eventBody(e),
      h('details', {}, h('summary', {}, 'JSON'), h('pre', {}, JSON.stringify(e, null, 2))));
  }

  // liveLimit is how many events a live event list keeps; older ones leave the list and
  // are on the pages before it.
  const liveLimit = 500;

  // openEvents follows a session's events over /ui/events: the latest page of its history,
  // then each event as it is committed. The browser reconnects by itself, and resumes after
  // the last event it got; events already shown are not shown twice.
  function openEvents(r, s) {
    const es = new EventSource('/ui/events?session=' + enc(r.id));
    app.evs = es;
    const parse = (ev) => { try { return JSON.parse(ev.data); } catch (_) { return null; } };
    es.addEventListener('event', (ev) => {
      if (app.evs !== es) return;
      const e = parse(ev);
      if (!e || !e.id || !e.type) return;
      addLiveEvent(s, r, e);
      if (e.type === 'session.deleted') closeEvents(); // nothing follows, and nothing to reconnect to
    });
    es.addEventListener('history', (ev) => {
      if (app.evs !== es) return;
      const x = parse(ev) || {};
      if (x.has_more) s.older = true;
      s.ready = true;
      liveChrome(s, r);
    });
    es.addEventListener('end', (ev) => {
      if (app.evs !== es) return;
      closeEvents();
      const e = parse(ev) || {};
      if (e.status === 401) showSignIn('Your session ended: the token is no longer valid. Sign in again.');
      else setText(s.evNote, e.message || 'The live events ended.');
    });
    es.addEventListener('open', () => { if (app.evs === es) setText(s.evNote, ''); });
    es.addEventListener('error', () => {
      if (app.evs !== es) return;
      if (es.readyState !== EventSource.CLOSED) {
        setText(s.evNote, 'Reconnecting…'); // the browser reconnects by itself
        return;
      }
      // Refused: the page's view says why (sign in again, the session is gone) and closes
      // this too; anything else (the server restarts) is tried again soon.
      app.evRetry = setTimeout(() => { if (app.evs === es) openEvents(r, s); }, 3000);
    });
  }

  // addLiveEvent puts e in the live list in ID order, once.
  function addLiveEvent(s, r, e) {
    if ($('ev-' + e.id)) return;
    if (!s.list) {
      s.list = h('ol', { class: 'events', id: 'event-list' });
      fill(s.events, s.list);
    }
    const item = eventItem(e);
    let after = s.list.lastElementChild;
    while (after && after.id.slice(3) > e.id) after = after.previousElementSibling;
    if (after) after.after(item);
    else s.list.prepend(item);
    while (s.list.childElementCount > liveLimit) {
      s.list.firstElementChild.remove();
      s.older = true;
    }
    liveChrome(s, r);
  }

  // liveChrome draws what surrounds the live list: "No events yet", and the link to the
  // older events.
  function liveChrome(s, r) {
    if (!s.ready) return;
    if (!s.list) fill(s.events, h('p', { class: 'muted', id: 'no-events' }, 'No events yet.'));
    const first = s.list && s.list.firstElementChild;
    const n = s.list ? s.list.childElementCount : 0;
    fill(s.pager, h('nav', { class: 'pager', 'aria-label': 'Pages' },
      h('span', { class: 'count' }, n + ' event' + (n === 1 ? '' : 's') + ', live'),
      s.older && first
        ? h('a', { href: hrefs.session(r.id, { before: first.id.slice(3) }), id: 'page-older' }, '← Older')
        : h('span', { class: 'disabled', 'aria-disabled': 'true' }, '← Older')));
  }

  // sendBox is the form that sends a user.message to the session, through the API with the
  // signed-in token. Ctrl+Enter (⌘+Enter) sends too.
  function sendBox(r) {
    const text = h('textarea', { id: 'send-text', name: 'message', rows: '3', placeholder: 'Write a message…', 'aria-describedby': 'send-error' });
    const btn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'send-submit' }, 'Send');
    const err = h('p', { class: 'error', id: 'send-error', role: 'alert', hidden: true });
    const form = h('form', { class: 'send', id: 'send-form', novalidate: true },
      h('label', { for: 'send-text' }, 'Send a user.message'), text, err, h('div', { class: 'btn-row' }, btn));
    const fail = (msg) => {
      err.textContent = msg;
      err.hidden = !msg;
    };
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (btn.disabled) return;
      const t = text.value.trim();
      if (!t) {
        fail('Write a message first.');
        text.focus();
        return;
      }
      fail('');
      btn.disabled = true;
      try {
        await apiCall('POST', '/sessions/' + enc(r.id) + '/events',
          { events: [{ type: 'user.message', content: [{ type: 'text', text: t }] }] });
        if (text.value.trim() === t) text.value = '';
      } catch (ex) {
        if (ex.status !== 401) fail(ex.message);
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  }

  pages.session = {
    title: (r) => shortID(r.id),
    // The latest events are live; a page of older ones (a cursor in the address) is not.
    live: (r) => !r.before && !r.after,
    shell(r) {
      const s = {};
      s.crumbEnv = h('span', {}, '…');
      s.status = h('span', { class: 'badge big', id: 'session-status' }, '…');
      s.details = h('dl', { class: 'kv', id: 'session-details' });
      s.events = h('div', { id: 'events', 'aria-live': 'polite', 'aria-relevant': 'additions' }, loading());
      s.evNote = h('p', { class: 'muted small', id: 'events-note', role: 'status' });
      s.pager = h('div', {});
      s.banner = h('div', {});
      s.body = h('div', { class: 'grid-2' },
        h('section', { class: 'panel', 'aria-labelledby': 'h-events' }, h('h2', { id: 'h-events' }, 'Events'),
          s.events, s.evNote, s.pager, sendBox(r)),
        h('section', { class: 'panel', 'aria-labelledby': 'h-sdetails' }, h('h2', { id: 'h-sdetails' }, 'Details'), s.details));
      s.root = h('div', {},
        crumbs(h('a', { href: '#/' }, 'Environments'), s.crumbEnv, h('span', {}, 'Session')),
        h('div', { class: 'head' },
          h('div', { class: 'head-title' }, pageTitle('Session ', h('span', { class: 'id' }, r.id)), s.status)),
        s.banner, s.body);
      return s;
    },
    update(s, v, r) {
      if (v.error) {
        fill(s.banner, errorBanner(v.error));
        s.body.hidden = true;
        return;
      }
      fill(s.banner);
      s.body.hidden = false;
      const x = v.session;
      const env = v.environment && !v.environment.error ? v.environment : null;
      const crumb = h('a', { href: hrefs.sessions(x.environment_id), id: 'crumb-env' }, env ? env.name : shortID(x.environment_id));
      s.crumbEnv.replaceWith(crumb);
      s.crumbEnv = crumb;
      setText(s.status, x.status);
      s.status.className = 'badge big st-' + x.status;
      const kv = (k, val) => [h('dt', {}, k), h('dd', {}, val)];
      const keys = Object.keys(x.metadata || {}).sort();
      fill(s.details,
        kv('Title', x.title || h('span', { class: 'muted' }, '—')),
        kv('Status', [badge(x.status), x.archived_at ? [' ', badge('archived')] : null]),
        kv('Agent', h('span', { class: 'id' }, x.agent && x.agent.id ? x.agent.id : '')),
        kv('Environment', h('a', { href: hrefs.work(x.environment_id) }, env ? env.name : x.environment_id)),
        kv('Created', when(x.created_at)),
        keys.map((k) => kv(k, x.metadata[k])));
      if (pages.session.live(r)) return; // the live list has its own stream
      if (v.events.error) {
        fill(s.pager);
        return fill(s.events, errorBanner(v.events.error));
      }
      const evs = v.events.data;
      fill(s.events, evs.length ? h('ol', { class: 'events' }, evs.map(eventItem)) : h('p', { class: 'muted' }, 'No events.'));
      fill(s.pager, pager(r, v.events, (c) => hrefs.session(r.id, c), 'event', true));
    },
  };

  pages.notfound = {
    title: () => 'Page not found',
    shell(r) {
      return errorShell(r, 'Page not found', 'The dashboard has no page at ' + (location.hash || '#/') + '.');
    },
  };

  // invalid is a route whose ID is not one: no request can find it.
  pages.invalid = {
    title: (r) => IDS[r.kind].title + ' not found',
    shell(r) {
      const k = IDS[r.kind];
      return errorShell(r.from, k.title + ' not found',
        '“' + r.value + '” is not a valid ' + k.noun + ' ID: ' + k.a + ' ' + k.noun + ' ID is ' + r.kind + '_ followed by 32 lowercase hex digits.',
        r.kind);
    },
  };

  // ---------------------------------------------------------------- start

  (async function start() {
    let res;
    try {
      res = await fetch('/ui/me', { credentials: 'same-origin' });
    } catch (_) {
      showSignIn('The server cannot be reached.');
      return;
    }
    if (res.ok) signedIn(await res.json());
    else showSignIn('');
  })();
})();
