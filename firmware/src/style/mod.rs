//! `style` stage: the vector model. Turns a segment's notes into music features
//! (key and mode, meter, energy, bar structure, instrument family) in the form the
//! template index shares; the user's preferences override what the notes imply.
