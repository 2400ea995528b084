// photoq text for people, shared by the page scripts: the mirror of photoq/web/names.py (tests/test_names.py checks
// that both agree). A classic script that sets window.photoq.format and is require()-able by node's test runner.
(function (root, build) {
  'use strict';
  const format = build();
  if (typeof module === 'object' && module.exports) module.exports = format;
  else root.photoq = Object.assign(root.photoq || {}, { format });
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const ELLIPSIS = '…';
  const MAX_EXTENSION = 10;

  /** `name` when it fits in `limit` characters; else its start, an ellipsis and its end, with the extension whole. */
  function shortName(name, limit) {
    const max = limit || 32;
    const chars = Array.from(name);  // code points, as Python counts them
    if (chars.length <= max) return name;
    const dot = chars.lastIndexOf('.');
    const extension = dot > 0 && chars.length - dot <= MAX_EXTENSION ? chars.slice(dot) : [];
    const stem = chars.slice(0, chars.length - extension.length);
    const room = Math.max(2, max - extension.length - 1);
    const head = Math.ceil((room * 2) / 3);
    const tail = room - head;
    return stem.slice(0, head).join('') + ELLIPSIS + (tail ? stem.slice(-tail).join('') : '') + extension.join('');
  }

  const DATE_FORMAT = { dateStyle: 'medium', timeStyle: 'short' };

  /** One date format everywhere, in the browser's locale and time zone; a camera time (no offset recorded) is shown
   * as the camera's clock said it, marked as such. */
  function formatDate(iso, cameraTime, locale) {
    if (cameraTime) {
      const wall = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + 'Z');
      if (isNaN(wall)) return null;
      return wall.toLocaleString(locale, Object.assign({ timeZone: 'UTC' }, DATE_FORMAT)) + ' (camera time)';
    }
    const moment = new Date(iso);
    if (isNaN(moment)) return null;
    return moment.toLocaleString(locale, DATE_FORMAT);
  }

  return { shortName, formatDate };
});
