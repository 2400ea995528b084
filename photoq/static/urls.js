// photoq URLs for the scripts: the mirror of photoq/web/urls.py (tests/test_urls.py checks that both agree).
// A classic script that sets window.photoq.urls in the browser and is require()-able by node's test runner.
(function (root, build) {
  'use strict';
  const urls = build();
  if (typeof module === 'object' && module.exports) module.exports = urls;
  else root.photoq = Object.assign(root.photoq || {}, { urls });
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  function query(params) {
    const pairs = Object.entries(params || {}).filter(([, value]) => value !== null && value !== undefined);
    if (!pairs.length) return '';
    return '?' + pairs.map(([key, value]) => encodeURIComponent(key) + '=' + encodeURIComponent(String(value))).join('&');
  }

  return {
    albumPage: (albumId) => '/albums/' + albumId,
    photoPage: (photoId) => '/photos/' + photoId,
    photoRetryForm: (photoId) => '/photos/' + photoId + '/retry',
    photoDeleteForm: (photoId) => '/photos/' + photoId + '/delete',
    albumPhotosApi: (albumId, params) => '/api/albums/' + albumId + '/photos' + query(params),
    albumPageInOrder: (albumId, order, after) => '/albums/' + albumId + query({ order, after: after || null }),
    albumPhotoIdsApi: (albumId, order) => '/api/albums/' + albumId + '/photo-ids' + query({ order: order || null }),
    albumHashesApi: (albumId) => '/api/albums/' + albumId + '/hashes',
    albumDownloadApi: (albumId) => '/api/albums/' + albumId + '/download',
    photosDownloadApi: () => '/api/photos/download',
    photoDisplayApi: (photoId) => '/api/photos/' + photoId + '/display',
    photoApi: (photoId) => '/api/photos/' + photoId,
    photoRetryApi: (photoId) => '/api/photos/' + photoId + '/retry',
    events: (albumId) => '/api/events' + query({ album_id: albumId || null }),
    /** A photo's file; with its version (the server's, or any token that changes with the picture), a URL that
     * changes when the picture does. */
    photoFile(photoId, variant, version) {
      const url = '/api/photos/' + photoId + '/file?variant=' + encodeURIComponent(variant || 'original');
      return version === null || version === undefined ? url : url + '&v=' + encodeURIComponent(version);
    },
  };
});
