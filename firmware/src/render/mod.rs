//! `render` stage: picks template audio by style vector and intensity, fits it to the
//! planned tempo and key, adds the melody rendered with a SoundFont synth, joins the
//! per-segment pieces and normalises loudness.
