// photoq gallery selection: choose several photos, then download them as one zip, move them to another album or
// delete them (to the trash).
//
// Each tile gets a round "select" button (seen on hover and focus, always on touch screens). Once one photo is
// selected the gallery is in selection mode: a click on a tile toggles it, Shift+click selects the range from the
// last one clicked, and the keyboard does the same (Space toggles the focused tile, Shift+Space the range, arrow
// keys move between tiles, Ctrl+A selects every photo on the page, Esc ends the selection). The bar at the bottom
// submits plain form posts (the server answers with the album page and a message) and, for the zip, a form post
// to /api/photos/download that the browser saves as a file.
(function () {
  'use strict';

  const gallery = document.getElementById('gallery');
  const bar = document.getElementById('selection-bar');
  if (!gallery || !bar || !window.photoq) return;
  const html = document.documentElement;
  const selected = new Set();
  let anchor = null;  // the tile a Shift+click or Shift+Space range starts from

  const tiles = () => Array.from(gallery.querySelectorAll('.tile'));
  const idOf = (tile) => tile.dataset.photoId;
  const count = document.getElementById('selection-count');

  function ensureButton(tile) {
    if (tile.querySelector('.tile-select')) return;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'tile-select';
    button.setAttribute('aria-label', 'Select ' + (tile.dataset.filename || 'photo ' + idOf(tile)));
    button.setAttribute('aria-pressed', selected.has(idOf(tile)) ? 'true' : 'false');
    const template = document.getElementById('icon-check');
    if (template) button.append(template.content.firstElementChild.cloneNode(true));
    tile.append(button);
  }

  function render() {
    for (const tile of tiles()) {
      ensureButton(tile);
      const on = selected.has(idOf(tile));
      tile.classList.toggle('is-selected', on);
      tile.querySelector('.tile-select').setAttribute('aria-pressed', on ? 'true' : 'false');
    }
    const n = selected.size;
    html.dataset.selecting = n ? '1' : '0';
    bar.hidden = n === 0;
    // A live region: written only when what it says changes (new tiles arriving must not re-announce it).
    const text = n === 1 ? '1 photo selected' : n + ' photos selected';
    if (count.textContent !== text) count.textContent = text;
    const ids = Array.from(selected).join(',');
    for (const field of bar.querySelectorAll('input[name="photo_ids"]')) field.value = ids;
  }

  function setSelected(tile, on) {
    if (on) selected.add(idOf(tile)); else selected.delete(idOf(tile));
  }

  function toggle(tile, range) {
    const all = tiles();
    if (range && anchor && all.includes(anchor)) {
      const [from, to] = [all.indexOf(anchor), all.indexOf(tile)].sort((a, b) => a - b);
      const on = selected.has(idOf(anchor));
      for (const t of all.slice(from, to + 1)) setSelected(t, on);
    } else {
      setSelected(tile, !selected.has(idOf(tile)));
      anchor = tile;
    }
    render();
  }

  function clear() {
    selected.clear();
    anchor = null;
    render();
  }

  gallery.addEventListener('click', (event) => {
    const tile = event.target.closest('.tile');
    if (!tile) return;
    const onButton = event.target.closest('.tile-select');
    if (!onButton && !selected.size) return;  // not selecting: the link opens the photo
    if (event.target.closest('.tile-retry')) return;
    event.preventDefault();
    event.stopPropagation();
    toggle(tile, event.shiftKey);
  }, true);

  gallery.addEventListener('keydown', (event) => {
    const tile = event.target.closest('.tile');
    if (!tile) return;
    const all = tiles();
    const at = all.indexOf(tile);
    if (event.key === ' ' && (selected.size || event.target.closest('.tile-select'))) {
      event.preventDefault();
      toggle(tile, event.shiftKey);
    } else if (event.key === 'Enter' && selected.size && !event.target.closest('.tile-select')) {
      event.preventDefault();
      toggle(tile, event.shiftKey);
    } else if (['ArrowRight', 'ArrowLeft', 'ArrowDown', 'ArrowUp'].includes(event.key)) {
      const columns = Math.max(1, Math.round(gallery.clientWidth / tile.getBoundingClientRect().width));
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[event.key];
      const next = all[at + step];
      if (!next) return;
      event.preventDefault();
      next.querySelector('.tile-link').focus();
      if (event.shiftKey && selected.size) toggle(next, true);
    } else if ((event.key === 'a' || event.key === 'A') && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      for (const t of all) selected.add(idOf(t));
      render();
    }
  });

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && selected.size && !(window.photoq.viewer && window.photoq.viewer.isOpen())) {
      clear();
    }
  });

  document.getElementById('selection-clear').addEventListener('click', clear);
  document.getElementById('selection-all').addEventListener('click', () => {
    for (const tile of tiles()) selected.add(idOf(tile));
    render();
  });

  // Tiles added live (uploads) get their button too.
  new MutationObserver(() => render()).observe(gallery, { childList: true, subtree: true });
  render();
  window.photoq.selection = { selected: () => Array.from(selected), clear };
})();
