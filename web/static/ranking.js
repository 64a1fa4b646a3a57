// The ranking form, enhanced: reorder the sample cards by drag and drop (HTML5 drag
// and drop on a card's title bar; Pointer Events on its handle, for touch, pen and
// mouse alike), or by keyboard (arrows move the focus, a digit puts the focused card
// at that rank, t or = ties it with the card above); a side-by-side/stacked layout
// toggle kept in localStorage; rank badges and an aria-live announcement.
//
// The <select name="rank_N"> of each card stays what the form submits: every change
// here ends by writing the ranks into the selects. The model is a list of groups of
// cards, best first; cards in one group are tied and share a rank.
(function () {
  'use strict';
  var form = document.getElementById('ranking-form');
  var list = document.getElementById('samples');
  if (!form || !list) return;
  var status = document.getElementById('rank-status');
  var toggle = document.getElementById('layout-toggle');
  var LAYOUT_KEY = 'plumb.ranking.layout';

  function cards() { return Array.prototype.slice.call(list.querySelectorAll('.sample-card')); }
  function selectOf(card) { return card.querySelector('select.rank-select'); }
  function labelOf(card) { return card.getAttribute('data-label'); }
  function rankOf(card) {
    var v = parseInt(selectOf(card).value, 10);
    return isNaN(v) ? null : v;
  }

  // The groups from the selects when every card has a rank (a form shown again after a
  // refusal), else one group per card in page order, with the selects left empty until
  // the annotator first ranks something: an untouched form is not a ranking.
  var groups;
  function groupsFromSelects() {
    var all = cards();
    if (!all.every(function (c) { return rankOf(c) !== null; })) return null;
    var byRank = {};
    all.forEach(function (c) { (byRank[rankOf(c)] = byRank[rankOf(c)] || []).push(c); });
    return Object.keys(byRank).map(Number).sort(function (a, b) { return a - b; })
      .map(function (r) { return byRank[r]; });
  }

  function groupIndex(card) {
    for (var i = 0; i < groups.length; i++) if (groups[i].indexOf(card) >= 0) return i;
    return -1;
  }
  function removeCard(card) {
    var g = groupIndex(card);
    if (g >= 0) groups[g].splice(groups[g].indexOf(card), 1);
  }
  function dropEmpty() { groups = groups.filter(function (g) { return g.length > 0; }); }

  function announce(message) { if (status) status.textContent = message; }

  // Writes the model into the page: card order, selects, badges, tie marks.
  function apply(focus) {
    dropEmpty();
    var first = true;
    groups.forEach(function (group, i) {
      group.forEach(function (card) {
        var rank = String(i + 1);
        selectOf(card).value = rank;
        card.querySelector('.rank-badge').textContent = rank;
        card.setAttribute('data-rank', rank);
        card.classList.toggle('tied', group.length > 1);
        var tie = card.querySelector('[data-action="tie-above"]');
        if (tie) tie.disabled = first;
        first = false;
        list.appendChild(card);
      });
    });
    if (focus) focus.focus();
  }

  function describe(card) {
    var g = groupIndex(card);
    var others = groups[g].filter(function (c) { return c !== card; }).map(labelOf);
    var text = labelOf(card) + ': rank ' + (g + 1) + ' of ' + groups.length;
    return others.length ? text + ', tied with ' + others.join(' and ') : text;
  }

  // A digit: the card alone at that rank; the others keep their order and ties.
  function putAt(card, rank) {
    var g = groupIndex(card);
    if (groups[g].length === 1 && g === rank - 1) { apply(card); announce(describe(card)); return; }
    removeCard(card);
    dropEmpty();
    groups.splice(Math.min(rank - 1, groups.length), 0, [card]);
    apply(card);
    announce(describe(card));
  }

  // A select changed by hand: the number it shows is the rank it wants, as without
  // this script: the same number as another card's is a tie with it.
  function setRank(card, rank) {
    var target = groups[rank - 1];
    removeCard(card);
    if (target) target.push(card); else groups.push([card]);
    apply(null);
    announce(describe(card));
  }

  function tieWithAbove(card) {
    var order = cards();
    var i = order.indexOf(card);
    if (i <= 0) { announce(labelOf(card) + ' is first: nothing above to tie with'); return; }
    var above = order[i - 1];
    if (groupIndex(above) === groupIndex(card)) { announce(describe(card)); return; }
    removeCard(card);
    groups[groupIndex(above)].push(card);
    apply(card);
    announce(describe(card));
  }

  // After a drag, the groups follow the new card order: the dragged card stands
  // alone, and two other cards stay tied while they stay next to each other.
  function groupsFromOrder(moved, before) {
    var old = function (c) {
      for (var i = 0; i < before.length; i++) if (before[i].indexOf(c) >= 0) return i;
      return -1;
    };
    var next = [];
    var prev = null;
    cards().forEach(function (c) {
      if (prev && c !== moved && prev !== moved && old(c) === old(prev)) next[next.length - 1].push(c);
      else next.push([c]);
      prev = c;
    });
    return next;
  }

  // --- Dragging: the card under the pointer decides where the dragged card goes.
  var drag = null;

  function nearestCard(x, y) {
    var best = null, bestDistance = Infinity;
    cards().forEach(function (c) {
      var r = c.getBoundingClientRect();
      var dx = Math.max(r.left - x, 0, x - r.right), dy = Math.max(r.top - y, 0, y - r.bottom);
      var d = dx * dx + dy * dy;
      if (d < bestDistance) { bestDistance = d; best = c; }
    });
    return best;
  }

  function moveTo(x, y) {
    var hit = document.elementFromPoint(x, y);
    var over = hit && hit.closest ? hit.closest('.sample-card') : null;
    if (!over || !list.contains(over)) over = nearestCard(x, y);
    if (!over || over === drag.card) return;
    var r = over.getBoundingClientRect();
    var sideBySide = list.getAttribute('data-layout') === 'side' && y >= r.top && y <= r.bottom;
    var before = sideBySide ? x < r.left + r.width / 2 : y < r.top + r.height / 2;
    var anchor = before ? over : over.nextSibling;
    if (anchor !== drag.card && drag.card.nextSibling !== anchor) list.insertBefore(drag.card, anchor);
  }

  function startDrag(card, native, pointerId) {
    drag = {
      card: card,
      native: native,
      pointerId: pointerId,
      startIndex: cards().indexOf(card),
      before: groups.map(function (g) { return g.slice(); })
    };
    card.classList.add('dragging');
  }

  function endDrag() {
    if (!drag) return;
    var d = drag;
    drag = null;
    d.card.classList.remove('dragging');
    if (cards().indexOf(d.card) !== d.startIndex) groups = groupsFromOrder(d.card, d.before);
    apply(null);
    announce(describe(d.card));
  }

  list.addEventListener('pointerdown', function (e) {
    var handle = e.target.closest ? e.target.closest('.drag-handle') : null;
    if (!handle || drag) return;
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    startDrag(handle.closest('.sample-card'), false, e.pointerId);
    // Synthetic events (a test's) have no real pointer to capture.
    try { handle.setPointerCapture(e.pointerId); } catch (err) { /* nothing to capture */ }
  });
  document.addEventListener('pointermove', function (e) {
    if (!drag || drag.native || e.pointerId !== drag.pointerId) return;
    e.preventDefault();
    moveTo(e.clientX, e.clientY);
  });
  function pointerEnd(e) {
    if (!drag || drag.native || e.pointerId !== drag.pointerId) return;
    endDrag();
  }
  document.addEventListener('pointerup', pointerEnd);
  document.addEventListener('pointercancel', pointerEnd);

  list.addEventListener('dragstart', function (e) {
    // A pointer drag already runs: no second, native one.
    if (drag) { e.preventDefault(); return; }
    var card = e.target.closest ? e.target.closest('.sample-card') : null;
    if (!card) return;
    startDrag(card, true, null);
    e.dataTransfer.effectAllowed = 'move';
    try { e.dataTransfer.setData('text/plain', labelOf(card)); } catch (err) { /* old browsers */ }
  });
  list.addEventListener('dragover', function (e) {
    if (!drag || !drag.native) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'move';
    moveTo(e.clientX, e.clientY);
  });
  list.addEventListener('drop', function (e) {
    if (!drag || !drag.native) return;
    e.preventDefault();
    endDrag();
  });
  list.addEventListener('dragend', function () { if (drag && drag.native) endDrag(); });

  // --- Keyboard, on a focused card (not on the controls inside it).
  list.addEventListener('keydown', function (e) {
    var card = e.target;
    if (!card.classList || !card.classList.contains('sample-card') || e.altKey || e.ctrlKey || e.metaKey) return;
    var order = cards();
    var i = order.indexOf(card);
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      var next = order[i + (e.key === 'ArrowDown' ? 1 : -1)];
      if (next) next.focus();
      e.preventDefault();
    } else if (/^[1-9]$/.test(e.key) && Number(e.key) <= order.length) {
      putAt(card, Number(e.key));
      e.preventDefault();
    } else if (e.key === 't' || e.key === 'T' || e.key === '=') {
      tieWithAbove(card);
      e.preventDefault();
    }
  });

  list.addEventListener('click', function (e) {
    var button = e.target.closest ? e.target.closest('[data-action="tie-above"]') : null;
    if (button) tieWithAbove(button.closest('.sample-card'));
  });

  list.addEventListener('change', function (e) {
    if (!e.target.classList.contains('rank-select')) return;
    var card = e.target.closest('.sample-card');
    var rank = parseInt(e.target.value, 10);
    if (isNaN(rank)) { apply(null); announce(describe(card)); return; }
    setRank(card, rank);
  });

  // --- Layout: side by side or stacked, remembered.
  function setLayout(layout) {
    list.setAttribute('data-layout', layout);
    if (toggle) toggle.setAttribute('aria-pressed', layout === 'side' ? 'true' : 'false');
  }
  var saved = null;
  try { saved = window.localStorage.getItem(LAYOUT_KEY); } catch (err) { /* storage off */ }
  setLayout(saved === 'side' ? 'side' : 'stack');
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener('click', function () {
      var layout = list.getAttribute('data-layout') === 'side' ? 'stack' : 'side';
      setLayout(layout);
      try { window.localStorage.setItem(LAYOUT_KEY, layout); } catch (err) { /* storage off */ }
    });
  }

  // --- Start.
  Array.prototype.forEach.call(list.querySelectorAll('[data-action="tie-above"]'), function (b) {
    b.hidden = false;
  });
  var help = document.getElementById('keyboard-help');
  if (help) help.hidden = false;
  groups = groupsFromSelects();
  if (groups) {
    apply(null);
  } else {
    groups = cards().map(function (c) { return [c]; });
    var firstTie = list.querySelector('[data-action="tie-above"]');
    if (firstTie) firstTie.disabled = true;
  }
  form.classList.add('enhanced');
})();
