// The page's rendering: pure DOM writes from plain data (no engine calls here). Key numbers also
// go into data-* attributes, so a test reads what the page shows without parsing prose.
import { NO_PASID } from 'ioasid';
import { accountFaults } from '../expected-faults.mjs';
import { hex } from '../machine-layout.mjs';

const count = (n) => Math.round(n).toLocaleString('en-US');
const perSecond = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${count(n)}`);
const bytes = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MiB` : `${(n / 1024).toFixed(0)} KiB`);

/** h('td', { class: 'num' }, 'text', node…): an element with attributes and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v));
  el.append(...children.flat().filter((c) => c !== undefined && c !== null));
  return el;
}

const reasonsText = (byReason) =>
  Object.entries(byReason).map(([r, n]) => `${r} ${count(n)}`).join(', ');

function faultBars(byReason) {
  const entries = Object.entries(byReason);
  if (entries.length === 0) return [h('li', { class: 'none' }, 'none')];
  const max = Math.max(...entries.map(([, n]) => n));
  return entries.map(([reason, n]) =>
    h('li', { class: 'bar', 'data-reason': reason, 'data-count': n },
      h('span', {}, reason), h('i', { style: `width:${(100 * n) / max}%` }), h('b', {}, count(n))));
}

/** An FD's objects: IOAS rows (areas, mirrored by which HWPTs), HWPT rows (which IOAS), devices. */
function objectRows(objects) {
  return objects.map((o) => {
    let what;
    if (o.type === 'ioas') what = `${o.areas} area${o.areas === 1 ? '' : 's'} · HWPTs ${o.hwptIds.join(', ') || '—'}`;
    else if (o.type === 'hwpt-paging') what = `IOAS ${o.ioasId}${o.pasid ? ' · PASID-capable' : ''}${o.auto ? ' · auto' : ''}`;
    else if (o.type === 'device') what = `${o.bdf} (RID ${hex(o.rid)})`;
    else what = Object.entries(o).filter(([k]) => !['id', 'type', 'users'].includes(k)).map(([k, v]) => `${k} ${v}`).join(' · ');
    return h('tr', { class: 'object', 'data-id': o.id, 'data-type': o.type, 'data-ioas': o.ioasId },
      h('td', { class: 'num' }, `#${o.id}`), h('td', {}, o.type), h('td', {}, what), h('td', { class: 'num' }, o.users));
  });
}

const attachmentText = (attachments) =>
  attachments.map(([pasid, hwpt]) => `${pasid === NO_PASID ? 'RID' : `PASID ${pasid}`} → HWPT ${hwpt}`).join(', ') || 'nothing attached (DMA blocked)';

/**
 * A device's faults: red when any is unexpected; otherwise, when the demo provoked them on purpose
 * (expected-faults.mjs), muted with the reason, so they do not read as a failure.
 */
function faultCell(r) {
  const faults = r ? reasonsText(r.faultsByReason) : '';
  const attrs = { 'data-faults': JSON.stringify(r?.faultsByReason ?? {}) };
  if (!faults) return h('td', { ...attrs, class: 'none' }, '—');
  const { expected, unexpected } = r.windows ? accountFaults(r) : { expected: [], unexpected: 1 };
  if (unexpected > 0) return h('td', { ...attrs, class: 'fault', 'data-unexpected': unexpected }, faults);
  return h('td', { ...attrs, class: 'expected', 'data-unexpected': 0 }, faults,
    ...expected.map((e) => h('small', {}, `expected at ${e.window}: ${e.why}`)));
}

function deviceRows(devices, reports) {
  return devices.map((d) => {
    const r = reports.get(d.name);
    return h('tr', { class: 'device', 'data-name': d.name, 'data-translations': r?.translations ?? 0 },
      h('td', {}, h('b', {}, d.name), h('br'), h('code', {}, d.bdf)),
      h('td', { class: 'num' }, d.devId ?? '—'),
      h('td', { class: 'attachments' }, attachmentText(d.attachments)),
      h('td', { class: 'num' }, r ? `${perSecond(r.rate)}/s` : '—'),
      faultCell(r));
  });
}

function vmCard(vm, reports) {
  return h('section', { class: 'fd', 'data-vm': vm.name },
    h('h2', {}, `VM ${vm.name} · its own ioasid FD`),
    h('p', {}, `host RAM ${hex(vm.host.start)}–${hex(vm.host.end - 1)} · PASIDs owned: `,
      h('span', { class: 'pasids' }, vm.pasids.join(', ') || 'none')),
    h('h3', {}, 'Objects (FD-local IDs): address spaces, page tables, bound devices'),
    h('table', {}, h('tr', {}, h('th', {}, 'ID'), h('th', {}, 'type'), h('th', {}, 'what'), h('th', {}, 'users')), objectRows(vm.objects)),
    h('h3', {}, 'Devices: attachments per RID and PASID, DMA'),
    h('table', {}, h('tr', {}, h('th', {}, 'device'), h('th', {}, 'dev ID'), h('th', {}, 'attached'), h('th', {}, 'DMA'), h('th', {}, 'faults by reason')),
      deviceRows(vm.devices, reports)));
}

export function createView() {
  const $ = (id) => document.getElementById(id);
  const setValue = (id, value, text) => {
    $(id).dataset.value = String(value);
    $(id).textContent = text;
  };

  return {
    /** How the engine runs: worker translators, or single-threaded and why. */
    mode({ isolated, shared, workers, reason }) {
      const el = $('mode');
      Object.assign(el.dataset, { state: 'running', isolated, shared, workers });
      el.textContent = shared
        ? `cross-origin isolated · shared memory · ${workers} worker translators`
        : `single-threaded: ${reason ?? 'shared memory not in use'} · ${workers} workers`;
    },

    authorization(rogue, attempts) {
      $('authorization').querySelector('h2').textContent = `Authorization: rogue ${rogue.bdf}, bound to VM B's FD, uses what it learned about VM A`;
      $('authorization').querySelector('ul').replaceChildren(...attempts.map((a) =>
        h('li', { 'data-pass': a.pass, 'data-errno': a.errno }, `${a.call} → ${a.outcome}`)));
    },

    /** Engine-wide numbers from iommu.stats(); `rate` in translations per second. */
    engine(stats, rate) {
      setValue('rate', Math.round(rate), perSecond(rate));
      setValue('translations', stats.translations, count(stats.translations));
      const lookups = stats.hits + stats.misses;
      $('hit-rate').textContent = lookups ? `${((100 * stats.hits) / lookups).toFixed(1)} %` : '—';
      setValue('table-pages', stats.tablePages, `${count(stats.tablePages)} (${bytes(stats.tablePages * 4096)})`);
      $('memory').textContent = bytes(stats.memoryBytes);
      $('faults').replaceChildren(...faultBars(stats.faultsByReason));
    },

    /** Each VM's FD snapshot; `reports`: device name → { translations, rate, faultsByReason }. */
    vms(snapshots, reports) {
      $('vms').replaceChildren(...snapshots.map((vm) => vmCard(vm, reports)));
    },

    checks(checks, afterClose) {
      const section = $('checks');
      section.hidden = false;
      section.querySelector('ul').replaceChildren(
        ...checks.map((c) => h('li', { 'data-pass': c.pass }, c.name)),
        h('li', { class: 'none' }, `after fdA.close(): nicA DMA → ${afterClose.ok ? 'translated!' : `fault ${afterClose.fault.reason}`}`));
      const failed = checks.filter((c) => !c.pass).length;
      section.querySelector('.verdict').textContent = failed ? `FAILED: ${failed} of ${checks.length} checks` : `PASS: all ${checks.length} checks`;
      section.dataset.passed = String(failed === 0);
    },

    stopped(message) {
      $('mode').dataset.state = 'stopped';
      $('stop').disabled = true;
      $('stop').textContent = message;
    },

    error(e) {
      $('mode').dataset.state = 'error';
      $('mode').textContent = 'error';
      $('error').hidden = false;
      $('error').textContent = String(e?.stack ?? e);
    },
  };
}
