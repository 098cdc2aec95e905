// The conversation page: a click on a transcript line plays its recording from that line's start.
"use strict";
document.querySelectorAll("ol.transcript").forEach(function (list) {
  var audio = document.getElementById(list.dataset.audio);
  list.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-start]");
    if (!button || !audio) return;
    audio.currentTime = parseFloat(button.dataset.start);
    var playing = audio.play();
    if (playing && playing.catch) playing.catch(function () {});  // autoplay refused: the position is set all the same
  });
});
