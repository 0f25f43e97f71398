// lkproto wire explorer. Reads the model embedded by lkproto/wire/explorer.py from the
// lk-data element and draws it. Record text is remote input: it is only ever written with
// textContent or as attribute values, never parsed as HTML.
'use strict';
(() => {
  const model = JSON.parse(document.getElementById('lk-data').textContent);
  const rows = model.rows;
  const lanes = model.lanes;
  const laneIndex = new Map(lanes.map((lane, k) => [lane.id, k]));
  const laneLabel = new Map(lanes.map((lane) => [lane.id, lane.label]));
  const streams = new Map(model.streams.map((s) => [s.id, s]));
  const rpcs = new Map(model.rpcs.map((r) => [r.id, r]));
  const state = { type: '', participant: '', topic: '', dir: '', search: '', group: null,
                  selected: null };

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  };
  const hue = (text) => {
    let h = 0;
    for (let k = 0; k < text.length; k++) h = (h * 31 + text.charCodeAt(k)) % 360;
    return h;
  };
  const seconds = (t) => `+${t.toFixed(3)} s`;
  const short = (id) => (id && id.length > 12 ? `${id.slice(0, 8)}…` : id || '');
  const kind = (row) => {
    if (row.error || row.type.includes('<')) return 'bad';
    if (row.enc) return 'enc';
    if (row.ch === 'signal') return 'signal';
    if (row.ch === 'rtp') return 'rtp';
    return 'data';
  };

  // -- header and filters ----------------------------------------------------------------------
  const stats = document.getElementById('stats');
  stats.textContent = `${rows.length} records, ${model.streams.length} streams, ` +
    `${model.rpcs.length} RPCs`;
  if (model.omitted > 0) {
    document.querySelector('header').append(el('p', {
      class: 'omitted', id: 'omitted',
      text: `Showing the first ${rows.length} of ${model.total} records ` +
        `(${model.omitted} left out; a page holds at most ${model.limits.max_records} records ` +
        `and ${Math.round(model.limits.max_data_bytes / 1048576)} MiB of record data). ` +
        "Filter the tap with 'lkproto tap --type/--participant/--topic ... --html' or raise " +
        '--max-records to see others.',
    }));
  }
  const distinct = (key) => [...new Set(rows.map((r) => r[key]).filter((v) => v))].sort();
  const select = (id, label, values, key) => {
    const node = el('select', { id, 'aria-label': label, onchange: () => {
      state[key] = node.value;
      apply();
    } }, el('option', { value: '', text: `all ${label}s` }),
    ...values.map((v) => el('option', { value: v, text: v })));
    return node;
  };
  const search = el('input', { id: 'search', type: 'search', placeholder: 'search fields, ids…',
    'aria-label': 'search', oninput: () => {
      state.search = search.value.trim().toLowerCase();
      apply();
    } });
  const groupChip = el('span', { id: 'group', class: 'chip', hidden: true });
  const filters = document.getElementById('filters');
  filters.append(
    select('f-type', 'type', distinct('type'), 'type'),
    select('f-participant', 'participant', distinct('participant'), 'participant'),
    select('f-topic', 'topic', distinct('topic'), 'topic'),
    el('select', { id: 'f-dir', 'aria-label': 'direction', onchange: (e) => {
      state.dir = e.target.value;
      apply();
    } }, el('option', { value: '', text: 'both directions' }),
    el('option', { value: '>', text: 'sent (>)' }), el('option', { value: '<', text: 'received (<)' })),
    search, groupChip, el('span', { id: 'visible', class: 'count' }));

  // -- diagram ---------------------------------------------------------------------------------
  const diagram = document.getElementById('diagram');
  const laneHead = el('div', { class: 'row head' }, el('span', { class: 'idx', text: '#' }),
    el('span', { class: 'time', text: 'time' }),
    el('div', { class: 'lanes' }, ...lanes.map((lane) => el('span', {
      class: `lane-name lane-${lane.id === 'client' ? 'client' : lane.id === 'server' ? 'server' : 'peer'}`,
      style: `left:${(100 * laneIndex.get(lane.id)) / lanes.length}%;width:${100 / lanes.length}%`,
      title: lane.label, text: lane.label }))));
  const body = el('div', { class: 'body' });
  const lifelines = el('div', { class: 'lifelines' }, ...lanes.map((lane, k) => el('span', {
    style: `left:${(100 * (k + 0.5)) / lanes.length}%` })));
  body.append(lifelines);
  diagram.append(laneHead, body);

  const haystacks = rows.map((r) => [r.type, r.label, r.participant, r.topic, r.stream, r.rpc,
    r.marker, r.error, JSON.stringify(r.fields), JSON.stringify(r.decrypted)]
    .filter((v) => v).join('\n').toLowerCase());
  const nodes = rows.map((row, pos) => {
    const a = laneIndex.get(row.from) ?? 0;
    const b = laneIndex.get(row.to) ?? 1;
    const lo = Math.min(a, b);
    const span = Math.max(Math.abs(b - a), 0.5);
    const group = row.rpc || row.stream;
    const arrow = el('div', {
      class: `arrow ${kind(row)} ${b >= a ? 'ltr' : 'rtl'}`,
      style: `left:${(100 * (lo + 0.5)) / lanes.length}%;width:${(100 * span) / lanes.length}%`,
    }, el('span', { class: 'label' }, row.enc ? el('span', { class: 'lock', text: '🔒' }) : null,
      `${row.label}`, row.participant && row.dir === '<' ? el('small', { text: ` ${row.participant}` }) : null,
      row.topic ? el('small', { class: 'topic', text: ` #${row.topic}` }) : null,
      row.role ? el('small', { class: 'role', text: ` rpc ${row.role}` }) : null));
    const node = el('div', {
      class: `row msg${group ? ' grouped' : ''}`, 'data-pos': pos, 'data-type': row.type,
      tabindex: -1, role: 'button', style: group ? `--group:hsl(${hue(group)} 70% 45%)` : null,
      title: `${row.type} ${row.dir} ${row.ch}${row.size ? ` ${row.size} B` : ''}`,
      onclick: () => selectRow(pos),
    }, el('span', { class: 'idx', text: row.i }), el('span', { class: 'time', text: seconds(row.t) }),
    el('div', { class: 'lanes' }, arrow));
    const marker = row.marker ? el('div', { class: 'marker', text: `⟳ ${row.marker}` }) : null;
    if (marker) body.append(marker);
    body.append(node);
    return { node, marker };
  });

  const visible = (row, pos) => {
    if (state.type && row.type !== state.type) return false;
    if (state.participant && row.participant !== state.participant) return false;
    if (state.topic && row.topic !== state.topic) return false;
    if (state.dir && row.dir !== state.dir) return false;
    if (state.group && row.stream !== state.group && row.rpc !== state.group) return false;
    return !state.search || haystacks[pos].includes(state.search);
  };
  const apply = () => {
    let shown = 0;
    rows.forEach((row, pos) => {
      const on = visible(row, pos);
      nodes[pos].node.hidden = !on;
      if (nodes[pos].marker) nodes[pos].marker.hidden = !on && !!(state.type || state.search);
      shown += on ? 1 : 0;
    });
    groupChip.hidden = !state.group;
    groupChip.replaceChildren();
    if (state.group) {
      groupChip.append(`only ${rpcs.has(state.group) ? 'RPC' : 'stream'} ${short(state.group)} `,
        el('button', { type: 'button', text: '×', 'aria-label': 'clear group', onclick: () => {
          state.group = null;
          apply();
        } }));
    }
    document.getElementById('visible').textContent = `${shown} shown`;
    window.explorer.visible = shown;
  };

  // -- detail pane -----------------------------------------------------------------------------
  const detail = document.getElementById('detail');
  const rowLink = (pos) => {
    const row = rows[pos];
    return el('li', {}, el('a', { href: '#', onclick: (e) => {
      e.preventDefault();
      selectRow(pos);
    }, text: `#${row.i} ${row.dir} ${row.label}` }), ` ${seconds(row.t)}`);
  };
  const groupButton = (id, what) => el('button', { type: 'button', class: 'only',
    text: `show only this ${what}`, onclick: () => {
      state.group = id;
      apply();
    } });
  const hexDump = (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const lines = [];
    for (let off = 0; off < bytes.length; off += 16) {
      const chunk = [...bytes.slice(off, off + 16)];
      const hex = chunk.map((x) => x.toString(16).padStart(2, '0')).join(' ');
      const text = chunk.map((x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : '.')).join('');
      lines.push(`${off.toString(16).padStart(6, '0')}  ${hex.padEnd(47)}  ${text}`);
    }
    return lines.join('\n');
  };
  const pair = (dl, key, value) => {
    if (value === null || value === undefined || value === '') return;
    dl.append(el('dt', { text: key }), el('dd', { text: value }));
  };
  const overview = () => {
    state.selected = null;
    detail.removeAttribute('data-index');
    for (const item of nodes) item.node.classList.remove('selected');
    const streamList = el('ul', { id: 'streams' }, ...model.streams.map((s) => el('li', {},
      el('a', { href: '#', text: `${short(s.id)} ${s.topic || ''}`, onclick: (e) => {
        e.preventDefault();
        selectRow(s.rows[0]);
      } }), ` ${s.kind || ''} stream, ${s.rows.length} packets, ${s.chunks} chunks` +
        `${s.closed ? '' : ', not closed'}`)));
    const rpcList = el('ul', { id: 'rpcs' }, ...model.rpcs.map((r) => el('li', {},
      el('a', { href: '#', text: `${r.method || '?'} ${short(r.id)}`, onclick: (e) => {
        e.preventDefault();
        selectRow([...r.request, ...r.ack, ...r.response].sort((x, y) => x - y)[0]);
      } }), ` v${r.version ?? '?'}: ${r.request.length ? 'request' : 'no request'}, ` +
        `${r.ack.length ? 'ack' : 'no ack'}, ${r.response.length ? 'response' : 'no response'}` +
        `${r.error ? ` (error ${r.error})` : ''}`)));
    detail.replaceChildren(el('h2', { text: 'Session' }),
      el('p', { class: 'hint', text: 'Click a message to see its decoded fields and raw bytes; ' +
        '↑/↓ move between visible messages.' }),
      el('h3', { text: `Streams (${model.streams.length})` }), streamList,
      el('h3', { text: `RPCs (${model.rpcs.length})` }), rpcList);
    window.explorer.selected = null;
  };
  const selectRow = (pos) => {
    if (pos === undefined || pos === null || !rows[pos]) return;
    const row = rows[pos];
    state.selected = pos;
    for (const item of nodes) item.node.classList.remove('selected');
    nodes[pos].node.classList.add('selected');
    nodes[pos].node.scrollIntoView({ block: 'nearest' });
    const dl = el('dl', { class: 'facts' });
    pair(dl, 'record', `#${row.i}`);
    pair(dl, 'time', `${row.time} (${seconds(row.t)})`);
    pair(dl, 'direction', row.dir === '>' ? '> sent' : '< received');
    pair(dl, 'channel', row.ch);
    pair(dl, 'arrow', `${laneLabel.get(row.from)} → ${laneLabel.get(row.to)}`);
    pair(dl, 'participant', row.participant);
    pair(dl, 'topic', row.topic);
    pair(dl, 'size', row.size ? `${row.size} bytes` : null);
    pair(dl, 'encrypted', row.enc ? (row.decrypted ? 'yes, decrypted with the tap owner\'s key'
      : 'yes, no key to open it') : null);
    pair(dl, 'marker', row.marker);
    pair(dl, 'error', row.error);
    const parts = [el('button', { type: 'button', class: 'back', text: '← session',
      onclick: overview }), el('h2', { id: 'detail-type', text: row.type }), dl];
    if (row.stream && streams.has(row.stream)) {
      const s = streams.get(row.stream);
      parts.push(el('h3', { text: `Stream ${s.id}` }), el('p', { text:
        `${s.kind ? `${s.kind} stream` : 'stream'} on ${s.topic || '(no topic)'}, ${s.chunks} chunks` +
        `${s.closed ? ', closed' : ', not closed'}` }), groupButton(s.id, 'stream'),
      el('ol', { class: 'group' }, ...s.rows.map(rowLink)));
    }
    if (row.rpc && rpcs.has(row.rpc)) {
      const r = rpcs.get(row.rpc);
      parts.push(el('h3', { text: `RPC ${r.method || '?'} (v${r.version ?? '?'})` }),
        el('p', { class: 'mono', text: r.id }), groupButton(r.id, 'RPC'));
      for (const [what, list] of [['request', r.request], ['ack', r.ack], ['response', r.response]]) {
        parts.push(el('h4', { text: `${what}${list.length ? '' : ': none seen'}` }),
          el('ol', { class: 'group' }, ...list.map(rowLink)));
      }
      if (r.error) parts.push(el('p', { class: 'error', text: `error ${r.error}` }));
    }
    parts.push(el('h3', { text: 'Decoded fields' }),
      el('pre', { id: 'fields', text: row.fields === null ? '(not decoded)'
        : JSON.stringify(row.fields, null, 2) }));
    if (row.decrypted) {
      parts.push(el('h3', { text: 'Decrypted packet' }),
        el('pre', { id: 'decrypted', text: JSON.stringify(row.decrypted, null, 2) }));
    }
    parts.push(el('h3', { text: `Raw bytes (${row.size} B)` }),
      el('pre', { id: 'raw', class: 'hex', text: row.size ? hexDump(row.raw) : '(none)' }));
    if (row.clipped) {
      parts.push(el('p', { class: 'hint', text: `Cut for the page: at most ` +
        `${model.limits.max_raw_bytes} raw bytes and ${model.limits.max_string_chars} ` +
        'characters per string are kept; the tap file holds everything.' }));
    }
    detail.replaceChildren(...parts);
    detail.setAttribute('data-index', String(row.i));
    window.explorer.selected = row.i;
  };
  document.addEventListener('keydown', (e) => {
    if (e.target === search || (e.key !== 'ArrowDown' && e.key !== 'ArrowUp')) return;
    const step = e.key === 'ArrowDown' ? 1 : -1;
    let pos = state.selected === null ? (step > 0 ? -1 : rows.length) : state.selected;
    for (pos += step; pos >= 0 && pos < rows.length; pos += step) {
      if (!nodes[pos].node.hidden) {
        e.preventDefault();
        selectRow(pos);
        return;
      }
    }
  });

  window.explorer = { total: model.total, rows: rows.length, visible: rows.length, selected: null,
                      select: selectRow };
  overview();
  apply();
})();
