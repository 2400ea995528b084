// photoq photo page: while the picture loads (a big display version over slow Wi-Fi takes a moment) it gets the box
// it will have once loaded, with the photo's ThumbHash painted in it; also after a live refresh swaps in a newly
// made display version.
(function () {
  'use strict';

  if (!window.photoq) return;

  function whileLoading() {
    const img = document.getElementById('photo-img');
    if (!img || (img.complete && img.naturalWidth)) return;
    // Before its file arrives an <img> has no size of its own (the stylesheet's width: auto lets it collapse).
    if (img.dataset.loadingWidth) img.style.width = img.dataset.loadingWidth;
    window.photoq.paintThumbHash(img, img, img.dataset.thumbhash);
    const settle = () => {
      img.style.width = '';
      img.style.backgroundImage = '';
    };
    img.addEventListener('load', settle, { once: true });
    img.addEventListener('error', settle, { once: true });
  }

  whileLoading();
  document.addEventListener('photoq:refreshed', whileLoading);
})();
