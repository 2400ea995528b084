// Unit tests of photoq/static/urls.js under node's own test runner (`node --test tests/js`).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const urls = require('../../photoq/static/urls.js');

test('pages of albums and photos', () => {
  assert.equal(urls.albumPage(7), '/albums/7');
  assert.equal(urls.photoPage(42), '/photos/42');
  assert.equal(urls.photoRetryForm(42), '/photos/42/retry');
  assert.equal(urls.photoDeleteForm(42), '/photos/42/delete');
});

test('API paths, with query parameters only when given', () => {
  assert.equal(urls.albumPhotosApi(3), '/api/albums/3/photos');
  assert.equal(urls.albumPhotosApi(3, { limit: 500, after: 0 }), '/api/albums/3/photos?limit=500&after=0');
  assert.equal(urls.albumPhotosApi(3, { status: null, limit: 5 }), '/api/albums/3/photos?limit=5');
  assert.equal(urls.photoApi(9), '/api/photos/9');
  assert.equal(urls.photoRetryApi(9), '/api/photos/9/retry');
  assert.equal(urls.events(), '/api/events');
  assert.equal(urls.events(4), '/api/events?album_id=4');
});

test('file URLs: the original by default, variants escaped, a version from the time written', () => {
  assert.equal(urls.photoFile(5), '/api/photos/5/file?variant=original');
  assert.equal(urls.photoFile(5, 'thumb-300'), '/api/photos/5/file?variant=thumb-300');
  assert.equal(urls.photoFile(5, 'a b&c'), '/api/photos/5/file?variant=a%20b%26c');
  // 1700000000.5 s is 1700000000500 ms, 0x18bcfe569f4 in hexadecimal.
  assert.equal(urls.photoFile(5, 'thumb-300', 'ab-18bcfe569f4'), '/api/photos/5/file?variant=thumb-300&v=ab-18bcfe569f4');
});
