// The ranking form, enhanced: rank a card by its select, by keyboard (arrows move the
// focus between cards, a digit gives the focused card that rank, t or = ties it with
// the card above, Delete clears its rank), by drag and drop (HTML5 drag and drop on a
// card's title bar; Pointer Events on its handle, for touch, pen and mouse alike) or by
// its "tie with above" button; a side-by-side/stacked layout toggle kept in
// localStorage; rank badges and an aria-live announcement.
//
// The <select name="rank_N"> of each card is both the model and what the form submits.
// A card gets a rank only from an act on that card: nothing here ever ranks a card the
// annotator has not ranked (an earlier version filled every select in as soon as one
// was changed, and so submitted orders nobody chose). A select or a digit sets exactly
// that card's number; a drag or a tie, which are about order, renumber the cards
// already ranked 1, 2, 3… in the order they keep. Ranked cards are shown first, best
// first; unranked ones follow in page order. The form is not sent until every card has
// a rank and the ranks run without gaps, as the server requires.
(function () {
  'use strict';
  var form = document.getElementById('ranking-form');
  var list = document.getElementById('samples');
  if (!form || !list) return;
  var status = document.getElementById('rank-status');
  var problemLine = document.getElementById('rank-problem');
  var toggle = document.getElementById('layout-toggle');
  var allBad = document.getElementById('all_bad');
  var LAYOUT_KEY = 'plumb.ranking.layout';

  function cards() { return Array.prototype.slice.call(list.querySelectorAll('.sample-card')); }
  function selectOf(card) { return card.querySelector('select.rank-select'); }
  function labelOf(card) { return card.getAttribute('data-label'); }
  // The order the server drew for this assignment: unranked cards keep it.
  var shown = cards();
  function slotOf(card) { return shown.indexOf(card); }
  function rankOf(card) {
    var v = parseInt(selectOf(card).value, 10);
    return isNaN(v) ? null : v;
  }
  function setRankOf(card, rank) { selectOf(card).value = rank === null ? '' : String(rank); }
  function ranked(card) { return rankOf(card) !== null; }

  // The ranked cards but `except`, in groups of equal rank, best first.
  function rankedGroups(except) {
    var byRank = {};
    cards().forEach(function (c) {
      if (c === except || !ranked(c)) return;
      (byRank[rankOf(c)] = byRank[rankOf(c)] || []).push(c);
    });
    return Object.keys(byRank).map(Number).sort(function (a, b) { return a - b; })
      .map(function (r) { return byRank[r]; });
  }
  function groupOf(groups, card) {
    for (var i = 0; i < groups.length; i++) if (groups[i].indexOf(card) >= 0) return i;
    return -1;
  }
  // Ranks the cards of `groups` 1, 2, 3… in order. Only cards already ranked, and the
  // one acted on, are ever in `groups`.
  function writeGroups(groups) {
    groups.forEach(function (group, i) { group.forEach(function (c) { setRankOf(c, i + 1); }); });
  }

  function announce(message) { if (status) status.textContent = message; }

  // Why the form cannot be sent yet, or null.
  function problem() {
    var all = cards();
    var unranked = all.filter(function (c) { return !ranked(c); });
    if (allBad && allBad.checked && unranked.length === all.length) return null;
    if (unranked.length) {
      return 'Rank every response before you submit: ' + unranked.map(labelOf).join(', ') +
        (unranked.length === 1 ? ' has' : ' have') + ' no rank yet.';
    }
    var used = {};
    all.forEach(function (c) { used[rankOf(c)] = true; });
    var highest = Math.max.apply(null, all.map(rankOf));
    for (var r = 1; r < highest; r++) {
      if (!used[r]) {
        return 'No response is ranked ' + r + ': ranks run 1, 2, 3… without gaps ' +
          '(tied responses share a number, and the next rank follows straight on).';
      }
    }
    return null;
  }

  // Writes the ranks into the page: card order, badges, tie marks, the tie buttons.
  function apply(focus) {
    var all = cards();
    var index = function (c) { return all.indexOf(c); };
    var order = all.filter(ranked).sort(function (a, b) { return rankOf(a) - rankOf(b) || index(a) - index(b); })
      .concat(all.filter(function (c) { return !ranked(c); })
        .sort(function (a, b) { return slotOf(a) - slotOf(b); }));
    var active = document.activeElement;
    if (order.some(function (c, i) { return c !== all[i]; })) {
      order.forEach(function (card) { list.appendChild(card); });
    }
    order.forEach(function (card, i) {
      var rank = rankOf(card);
      card.querySelector('.rank-badge').textContent = rank === null ? '–' : String(rank);
      if (rank === null) card.removeAttribute('data-rank'); else card.setAttribute('data-rank', String(rank));
      card.classList.toggle('tied', rank !== null && order.some(function (c) { return c !== card && rankOf(c) === rank; }));
      var tie = card.querySelector('[data-action="tie-above"]');
      if (tie) tie.disabled = i === 0 || !ranked(order[i - 1]);
    });
    // Moving a card takes the focus from whatever was focused in it.
    if (focus) focus.focus();
    else if (active && active !== document.activeElement && list.contains(active)) active.focus({ preventScroll: true });
    if (problemLine && !problemLine.hidden && !problem()) problemLine.hidden = true;
  }

  function describe(card) {
    if (!ranked(card)) return labelOf(card) + ': no rank';
    var others = cards().filter(function (c) { return c !== card && rankOf(c) === rankOf(card); }).map(labelOf);
    var text = labelOf(card) + ': rank ' + rankOf(card);
    if (others.length) text += ', tied with ' + others.join(' and ');
    var left = cards().filter(function (c) { return !ranked(c); }).map(labelOf);
    return left.length ? text + '. Still to rank: ' + left.join(', ') + '.' : text + '.';
  }

  // A digit, or the select: exactly that rank for that card; a number another card has
  // is a tie with it, as in the form without this script.
  function setRank(card, rank) {
    setRankOf(card, rank);
    apply(card);
    announce(describe(card));
  }

  function tieWithAbove(card) {
    var order = cards();
    var above = order[order.indexOf(card) - 1];
    if (!above) { announce(labelOf(card) + ' is first: nothing above to tie with.'); return; }
    if (!ranked(above)) {
      announce(labelOf(above) + ' has no rank yet: rank it before tying ' + labelOf(card) + ' with it.');
      return;
    }
    if (rankOf(above) !== rankOf(card)) {
      var groups = rankedGroups(card);
      groups[groupOf(groups, above)].push(card);
      writeGroups(groups);
      apply(card);
    }
    announce(describe(card));
  }

  // After a drag, the dragged card ranks just below the nearest ranked card above where
  // it was dropped (first, with none), and the ranked cards keep their order and ties.
  function rankWhereDropped(card) {
    var order = cards();
    var above = null;
    for (var i = order.indexOf(card) - 1; i >= 0 && !above; i--) if (ranked(order[i])) above = order[i];
    var groups = rankedGroups(card);
    groups.splice(above ? groupOf(groups, above) + 1 : 0, 0, [card]);
    writeGroups(groups);
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
      startIndex: cards().indexOf(card)
    };
    card.classList.add('dragging');
  }

  function endDrag() {
    if (!drag) return;
    var d = drag;
    drag = null;
    d.card.classList.remove('dragging');
    // Dropped where it was: not an act of ranking.
    if (cards().indexOf(d.card) !== d.startIndex) rankWhereDropped(d.card);
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
      setRank(card, Number(e.key));
      e.preventDefault();
    } else if (e.key === 'Delete' || e.key === 'Backspace') {
      setRank(card, null);
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
    // The select already holds the rank chosen: show it, and keep the focus on it.
    var card = e.target.closest('.sample-card');
    apply(e.target);
    announce(describe(card));
  });

  // Refused here as on the server, before anything is sent: the annotator sees why
  // and lands on the first response still to rank.
  form.addEventListener('submit', function (e) {
    var reason = problem();
    if (!reason) return;
    e.preventDefault();
    if (problemLine) { problemLine.textContent = reason; problemLine.hidden = false; }
    announce(reason);
    var first = cards().filter(function (c) { return !ranked(c); })[0];
    selectOf(first || cards()[0]).focus();
  });
  if (allBad) allBad.addEventListener('change', function () { apply(null); });

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
  apply(null);
  form.classList.add('enhanced');
})();
